package txn

// SetTestHooks installs the crash points of the coordinator: a non-nil
// error from afterPrepare stops the commit once every participant has
// prepared (nothing aborted, nothing committed), one from
// afterPrimaryCommit stops it after the commit point (the secondaries keep
// their locks). Either is as if the coordinator died there.
func SetTestHooks(db *DB, afterPrepare, afterPrimaryCommit func(TxnID, PrimaryRef, Timestamp) error) {
	db.hookAfterPrepare = afterPrepare
	db.hookAfterPrimaryCommit = afterPrimaryCommit
}
