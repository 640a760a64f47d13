package coprocess

import (
	"sync"
	"time"
)

// MemoryStore is a process-local Store with per-key TTL. Expired keys are dropped when read
// and by a sweep every 1024 writes, so expired keys cannot pile up.
type MemoryStore struct {
	mu     sync.Mutex
	m      map[string]memEntry
	writes uint64
	now    func() time.Time
}

type memEntry struct {
	value   string
	expires time.Time // zero: never
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{m: make(map[string]memEntry), now: time.Now}
}

func (e memEntry) live(now time.Time) bool { return e.expires.IsZero() || now.Before(e.expires) }

// Set stores value under key for ttl (ttl <= 0: no expiry).
func (s *MemoryStore) Set(key, value string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(key, value, ttl)
	return nil
}

func (s *MemoryStore) setLocked(key, value string, ttl time.Duration) {
	now := s.now()
	e := memEntry{value: value}
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	s.m[key] = e
	s.writes++
	if s.writes%1024 == 0 {
		for k, v := range s.m {
			if !v.live(now) {
				delete(s.m, k)
			}
		}
	}
}

// SetIfAbsent stores value under key for ttl (ttl <= 0: no expiry) only when no live value
// is there, atomically.
func (s *MemoryStore) SetIfAbsent(key, value string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && e.live(s.now()) {
		return false, nil
	}
	s.setLocked(key, value, ttl)
	return true, nil
}

// Get returns the live value under key.
func (s *MemoryStore) Get(key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return "", false, nil
	}
	if !e.live(s.now()) {
		delete(s.m, key)
		return "", false, nil
	}
	return e.value, true, nil
}

// Len is the number of keys held, expired ones not yet swept included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
