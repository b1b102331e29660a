package postgres

// Statements whose plans plans_test.go checks.
var (
	StoredNotificationsSQL = storedNotifications
	InsertNotificationsSQL = insertNotifications
)
