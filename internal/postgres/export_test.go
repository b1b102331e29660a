package postgres

import "time"

// Statements whose plans plans_test.go checks.
var (
	StoredNotificationsSQL = storedNotifications
	InsertNotificationsSQL = insertNotifications
	FanOutSQL              = fanOut
	EventsPageSQL          = eventsPage
	ClaimRecipientsSQL     = claimRecipients
	RecordRecipientsSQL    = recordRecipients
)

// TypeFilterSQL is typeFilter over parameter $1 and a column type.
var TypeFilterSQL = typeFilter("$1")

// RecordAttemptsSQL is the statement RecordAttempts records with.
var RecordAttemptsSQL = recordAttempts

// SetLoad makes n notifications on their way (Arriving) and samples the
// load at at, as a batch's flush does.
func (b *Batcher) SetLoad(n int32, at time.Time) {
	b.arriving.Store(n)
	b.sampleLoad(at)
}

// LoadSampledAt moves the last sample of the load to at.
func (b *Batcher) LoadSampledAt(at time.Time) {
	b.loadMu.Lock()
	b.loadAt = at
	b.loadMu.Unlock()
}

// The console's statements, whose plans console_test.go checks.
var (
	IntakeCountsSQL          = intakeCounts
	MerchantsSQL             = merchantsQuery
	OrdersOfSQL              = ordersOf
	MerchantNotificationsSQL = merchantNotifications
	ReconcileSummarySQL      = reconcileSummary
	DriftSQL                 = driftQuery
	BatchListSQL             = batchList
	BatchRecipientsSQL       = batchRecipients
)
