package postgres

// Statements whose plans plans_test.go checks.
var (
	StoredNotificationsSQL = storedNotifications
	InsertNotificationsSQL = insertNotifications
)

// RecordAttemptsSQL is the statement RecordAttempts records with.
var RecordAttemptsSQL = recordAttempts
