package memory

// SetUnsafe breaks one rule of the store, for negative controls: reads no
// longer raise the prepare floor, or prepared reads are not protected.
func SetUnsafe(s *Store, noReadRecord, noReadLocks bool) {
	s.unsafeNoReadRecord = noReadRecord
	s.unsafeNoReadLocks = noReadLocks
}
