package postgres

// Statements whose plans plans_test.go checks.
var (
	StoredNotificationsSQL = storedNotifications
	InsertNotificationsSQL = insertNotifications
	FanOutSQL              = fanOut
	EventsPageSQL          = eventsPage
)

// TypeFilterSQL is typeFilter over parameter $1 and a column type.
var TypeFilterSQL = typeFilter("$1")

// RecordAttemptsSQL is the statement RecordAttempts records with.
var RecordAttemptsSQL = recordAttempts
