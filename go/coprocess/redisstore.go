package coprocess

import (
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RedisStore is a Store in Redis: every key lives under Prefix, and a TTL becomes the key's
// expiry (SET key value PX ms), so several gateway processes sharing the Redis share the
// store (a value one stores, the others read, until it expires).
type RedisStore struct {
	Pool   *redis.Pool
	Prefix string
}

// NewRedisStore connects lazily to the Redis at addr ("host:port") with a small pool.
func NewRedisStore(addr, prefix string) *RedisStore {
	pool := &redis.Pool{
		MaxIdle:     16,
		IdleTimeout: 4 * time.Minute,
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", addr,
				redis.DialConnectTimeout(2*time.Second),
				redis.DialReadTimeout(2*time.Second),
				redis.DialWriteTimeout(2*time.Second))
		},
		TestOnBorrow: func(c redis.Conn, t time.Time) error {
			if time.Since(t) < time.Minute {
				return nil
			}
			_, err := c.Do("PING")
			return err
		},
	}
	return &RedisStore{Pool: pool, Prefix: prefix}
}

// Set stores value under Prefix+key; ttl > 0 sets the expiry (rounded up to a millisecond).
func (s *RedisStore) Set(key, value string, ttl time.Duration) error {
	c := s.Pool.Get()
	defer c.Close()
	var err error
	if ttl > 0 {
		ms := (ttl + time.Millisecond - 1) / time.Millisecond
		_, err = c.Do("SET", s.Prefix+key, value, "PX", int64(ms))
	} else {
		_, err = c.Do("SET", s.Prefix+key, value)
	}
	if err != nil {
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

// Get reads Prefix+key.
func (s *RedisStore) Get(key string) (string, bool, error) {
	c := s.Pool.Get()
	defer c.Close()
	v, err := redis.String(c.Do("GET", s.Prefix+key))
	if errors.Is(err, redis.ErrNil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("redis GET: %w", err)
	}
	return v, true, nil
}

// Close releases the pool's connections.
func (s *RedisStore) Close() error { return s.Pool.Close() }
