package crypt

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// CacheOptions bounds a [Cache]. A nil *CacheOptions, or a zero field,
// means the default written beside the field.
type CacheOptions struct {
	// TTL is how long an unwrapped data key is served from memory after
	// the provider unwrapped it. 0: 5 minutes.
	TTL time.Duration
	// MaxKeys is how many unwrapped data keys are kept; the least recently
	// used is dropped (and wiped) first. 0: 1000.
	MaxKeys int
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// Cache returns p with its Decrypt results kept in memory for a while, so
// reading a partition of many encrypted files, or the same files again,
// asks the provider (AWS KMS: a request each, billed, about 10 ms) once
// per data key rather than once per read. It is what the AWS Encryption
// SDK's caching materials manager does for the same reason.
//
// Only unwrapping is cached: GenerateDataKey and Encrypt go to p every
// time, so every file still gets a fresh data key. An entry is keyed by the
// KEK id and a hash of the wrapped key, holds a copy of the plaintext key
// that is wiped when it expires or is evicted, and hands callers copies of
// their own to wipe. Failures are not cached: a refused Decrypt (revoked
// rights) is asked again next time. The trade: a plaintext data key stays
// in this process's memory for up to TTL after its last unwrap, and a KEK
// whose decrypt rights are revoked keeps serving the keys already cached
// until they expire.
func Cache(p KeyProvider, opts *CacheOptions) *CachingProvider {
	var o CacheOptions
	if opts != nil {
		o = *opts
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &CachingProvider{p: p, o: o, lru: list.New(), byID: map[cacheKey]*list.Element{}}
}

// CachingProvider is a [KeyProvider] made by [Cache].
type CachingProvider struct {
	p KeyProvider
	o CacheOptions

	mu   sync.Mutex
	lru  *list.List // of *cacheEntry, most recently used first
	byID map[cacheKey]*list.Element
	hits int64
}

type cacheKey struct {
	kek     string
	wrapped [sha256.Size]byte
}

type cacheEntry struct {
	id      cacheKey
	key     []byte
	expires time.Time
}

var _ KeyProvider = (*CachingProvider)(nil)

// GenerateDataKey calls the provider: data keys are never reused.
func (c *CachingProvider) GenerateDataKey(ctx context.Context) (*DataKey, error) {
	return c.p.GenerateDataKey(ctx)
}

// Encrypt calls the provider.
func (c *CachingProvider) Encrypt(ctx context.Context, plaintext []byte) ([]byte, string, error) {
	return c.p.Encrypt(ctx, plaintext)
}

// Decrypt returns a copy of the cached key, or asks the provider and caches
// its answer.
func (c *CachingProvider) Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := cacheKey{kek: keyID, wrapped: sha256.Sum256(wrapped)}
	now := c.o.Now()
	c.mu.Lock()
	if el, ok := c.byID[id]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.hits++
			out := append([]byte(nil), e.key...)
			c.mu.Unlock()
			return out, nil
		}
		c.drop(el)
	}
	c.mu.Unlock()

	key, err := c.p.Decrypt(ctx, wrapped, keyID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok { // a concurrent miss got there first
		c.drop(el)
	}
	c.byID[id] = c.lru.PushFront(&cacheEntry{id: id, key: append([]byte(nil), key...), expires: now.Add(c.o.TTL)})
	for c.lru.Len() > c.o.MaxKeys {
		c.drop(c.lru.Back())
	}
	return key, nil
}

// drop removes and wipes an entry. Caller holds mu.
func (c *CachingProvider) drop(el *list.Element) {
	e := el.Value.(*cacheEntry)
	Wipe(e.key)
	c.lru.Remove(el)
	delete(c.byID, e.id)
}

// Purge drops and wipes every cached key, e.g. after revoking a KEK.
func (c *CachingProvider) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.drop(c.lru.Back())
	}
}

// Stats reports the keys cached and the Decrypt calls served from memory.
func (c *CachingProvider) Stats() (cached int, hits int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.hits
}
