package pool

// Stats is a snapshot of an allocator's accounting. All sizes are in bytes
// and count size classes (what the device actually holds), not requested sizes.
type Stats struct {
	// InUseBytes is held by live blocks (allocated and not yet freed).
	InUseBytes int64
	// CachedBytes is held by freed blocks kept for reuse.
	CachedBytes int64
	// PeakInUseBytes is the largest InUseBytes seen since the pool was made.
	PeakInUseBytes int64
	// LimitBytes is the cap on InUseBytes+CachedBytes (0: none).
	LimitBytes int64
	// Allocs counts Alloc calls that succeeded.
	Allocs int64
	// CacheHits counts the allocations served from the cache.
	CacheHits int64
	// DeviceAllocs and DeviceFrees count calls reaching the device allocator,
	// failed calls included.
	DeviceAllocs int64
	DeviceFrees  int64
	// CacheReleases counts times the cache was emptied to retry an allocation
	// (after the device ran out of memory, or to stay under LimitBytes).
	// ReleaseCache and Close, called by the pool's owner, are not counted.
	CacheReleases int64
	// OutOfMemory counts allocations that failed with ErrOutOfMemory.
	OutOfMemory int64

	// InUseBlocks is the number of live blocks.
	InUseBlocks int64
	// CachedBlocks is the number of freed blocks kept for reuse.
	CachedBlocks int64
	// Frees counts Free calls that succeeded.
	Frees int64
}
