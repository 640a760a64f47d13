package coprocess

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Defaults of RedisOptions.
const (
	DefaultRedisTimeout         = time.Second
	DefaultRedisBreakerFailures = 5
	DefaultRedisBreakerBackoff  = 2 * time.Second
	DefaultRedisMaxIdle         = 16
)

// ErrCircuitOpen: the Redis store's circuit breaker is open (Redis failed
// BreakerFailures times in a row); operations fail at once until the back-off has passed
// and a probe succeeds.
var ErrCircuitOpen = errors.New("redis store: circuit open (Redis failing), not tried")

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// Prefix is put in front of every key.
	Prefix string
	// Timeout bounds one operation from start to reply: taking a pooled connection or
	// dialling a new one, writing the command and reading the reply all share one deadline
	// (a retry on a stale pooled connection too). 0: DefaultRedisTimeout.
	Timeout time.Duration
	// BreakerFailures consecutive failed operations (no answer from Redis: refused,
	// reset, timed out) open the circuit. 0: DefaultRedisBreakerFailures; negative: no
	// breaker.
	BreakerFailures int
	// BreakerBackoff is how long an open circuit fails every operation at once; then one
	// operation is let through as a probe (half-open): its success closes the circuit, its
	// failure opens it for another back-off. 0: DefaultRedisBreakerBackoff.
	BreakerBackoff time.Duration
	// MaxIdle connections are kept for reuse. 0: DefaultRedisMaxIdle.
	MaxIdle int
	// Logger gets one line when the circuit opens and one when it closes (nil: stderr).
	Logger Logger
}

// RedisStore is a Store in Redis: every key lives under Prefix, and a TTL becomes the key's
// expiry (SET key value EX s, or PX ms for a TTL that is not whole seconds), so several
// gateway processes sharing the Redis share the store (a value one stores, the others read,
// until it expires). SetIfAbsent is SET key value NX EX s, atomic across processes.
//
// Every operation has one deadline (RedisOptions.Timeout) covering connection setup, the
// write and the reply, and a circuit breaker makes a failing Redis fail fast. A failed
// connection is closed, never reused; a store recovers by itself when Redis comes back.
type RedisStore struct {
	addr string
	opts RedisOptions

	mu     sync.Mutex
	idle   []*redisConn
	closed bool
	open   int // connections open (idle or in use)

	brk breaker
}

// NewRedisStore is NewRedisStoreWithOptions with the default timeout, breaker and pool, and
// the given key prefix.
func NewRedisStore(addr, prefix string) *RedisStore {
	return NewRedisStoreWithOptions(addr, RedisOptions{Prefix: prefix})
}

// NewRedisStoreWithOptions connects lazily to the Redis at addr ("host:port").
func NewRedisStoreWithOptions(addr string, opts RedisOptions) *RedisStore {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	if opts.BreakerFailures == 0 {
		opts.BreakerFailures = DefaultRedisBreakerFailures
	}
	if opts.BreakerBackoff <= 0 {
		opts.BreakerBackoff = DefaultRedisBreakerBackoff
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = DefaultRedisMaxIdle
	}
	if opts.Logger == nil {
		opts.Logger = StdLogger{L: log.New(os.Stderr, "coprocess ", log.LstdFlags)}
	}
	s := &RedisStore{addr: addr, opts: opts}
	s.brk = breaker{threshold: opts.BreakerFailures, backoff: opts.BreakerBackoff, log: opts.Logger, name: "redis store " + addr}
	return s
}

// Options are the store's options with the defaults filled in.
func (s *RedisStore) Options() RedisOptions { return s.opts }

// Set stores value under Prefix+key; ttl > 0 sets the expiry.
func (s *RedisStore) Set(key, value string, ttl time.Duration) error {
	args := append([]string{"SET", s.opts.Prefix + key, value}, expiry(ttl)...)
	if _, err := s.do(args...); err != nil {
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

// Get reads Prefix+key.
func (s *RedisStore) Get(key string) (string, bool, error) {
	v, err := s.do("GET", s.opts.Prefix+key)
	if err != nil {
		return "", false, fmt.Errorf("redis GET: %w", err)
	}
	switch v := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	default:
		return "", false, fmt.Errorf("redis GET: unexpected reply %T", v)
	}
}

// SetIfAbsent is SET Prefix+key value NX [EX ttl]: written only when the key is absent,
// atomically in Redis, so of several processes storing the same key at once exactly one
// gets stored = true.
func (s *RedisStore) SetIfAbsent(key, value string, ttl time.Duration) (bool, error) {
	args := append([]string{"SET", s.opts.Prefix + key, value, "NX"}, expiry(ttl)...)
	v, err := s.do(args...)
	if err != nil {
		return false, fmt.Errorf("redis SET NX: %w", err)
	}
	switch v := v.(type) {
	case nil:
		return false, nil // not set: the key exists
	case string:
		return v == "OK", nil
	default:
		return false, fmt.Errorf("redis SET NX: unexpected reply %T", v)
	}
}

func expiry(ttl time.Duration) []string {
	switch {
	case ttl <= 0:
		return nil
	case ttl%time.Second == 0:
		return []string{"EX", strconv.FormatInt(int64(ttl/time.Second), 10)}
	default:
		ms := (ttl + time.Millisecond - 1) / time.Millisecond
		return []string{"PX", strconv.FormatInt(int64(ms), 10)}
	}
}

// Ping checks that Redis answers (one operation, breaker included).
func (s *RedisStore) Ping() error {
	_, err := s.do("PING")
	return err
}

// BreakerStatus is the state of a RedisStore's circuit breaker.
type BreakerStatus struct {
	State               string // "closed", "open" or "half-open"
	Opens               uint64 // times it opened since the store was made
	ConsecutiveFailures int
}

// Breaker reports the circuit breaker's state.
func (s *RedisStore) Breaker() BreakerStatus { return s.brk.status() }

// OpenConns is the number of connections to Redis the store holds (idle or in use).
func (s *RedisStore) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// Close closes the idle connections; later operations fail.
func (s *RedisStore) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.open -= len(idle)
	s.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	return nil
}

// redisError is an error reply (-ERR ...): Redis answered, so it is not a store failure for
// the breaker.
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

func (s *RedisStore) do(args ...string) (interface{}, error) {
	probe, err := s.brk.allow(time.Now())
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(s.opts.Timeout)
	reply, err := s.roundTrip(deadline, args)
	var replyErr redisError
	if err == nil || errors.As(err, &replyErr) {
		s.brk.success(probe)
	} else {
		s.brk.failure(probe, err, time.Now())
	}
	return reply, err
}

// roundTrip runs one command before deadline. A pooled connection that turns out dead (Redis
// restarted since it was last used) is closed and the command is tried once more on a new
// connection, within the same deadline.
func (s *RedisStore) roundTrip(deadline time.Time, args []string) (interface{}, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := s.get(deadline, attempt == 0)
		if err != nil {
			return nil, err
		}
		reply, err := c.do(deadline, args)
		var replyErr redisError
		if err == nil || errors.As(err, &replyErr) {
			s.put(c)
			return reply, err
		}
		s.discard(c)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if reused && attempt == 0 && !timedOut && time.Now().Before(deadline) {
			s.dropIdle()
			continue
		}
		return nil, err
	}
}

type redisConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func (s *RedisStore) get(deadline time.Time, pooled bool) (*redisConn, bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, errors.New("redis store closed")
	}
	if n := len(s.idle); n > 0 && pooled {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.open++
	s.mu.Unlock()
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", s.addr)
	if err != nil {
		s.mu.Lock()
		s.open--
		s.mu.Unlock()
		return nil, false, err
	}
	return &redisConn{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}, false, nil
}

func (s *RedisStore) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.open -= len(idle)
	s.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

func (s *RedisStore) put(c *redisConn) {
	s.mu.Lock()
	if !s.closed && len(s.idle) < s.opts.MaxIdle {
		s.idle = append(s.idle, c)
		s.mu.Unlock()
		return
	}
	s.open--
	s.mu.Unlock()
	c.nc.Close()
}

func (s *RedisStore) discard(c *redisConn) {
	c.nc.Close()
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// do writes one command (a RESP array of bulk strings) and reads its reply, all before
// deadline.
func (c *redisConn) do(deadline time.Time, args []string) (interface{}, error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.bw, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.bw, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	return readReply(c.br)
}

var errProtocol = errors.New("redis: malformed reply")

// readReply reads one RESP reply: a simple or bulk string (string), a null (nil), an integer
// (int64), an array ([]interface{}), or an error reply (redisError).
func readReply(r *bufio.Reader) (interface{}, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, redisError(body)
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, errProtocol
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 512<<20 {
			return nil, errProtocol
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errProtocol
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, errProtocol
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]interface{}, n)
		for i := range out {
			v, err := readReply(r)
			var replyErr redisError
			if err != nil && !errors.As(err, &replyErr) {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	default:
		return nil, errProtocol
	}
}

// breaker is a circuit breaker: closed (operations run) until threshold consecutive
// failures, then open (operations fail with ErrCircuitOpen) for backoff, then half-open: one
// operation runs as a probe while the others still fail; the probe's success closes it, its
// failure opens it again. One log line when it opens (from closed), one when it closes.
type breaker struct {
	threshold int // <= 0: never opens
	backoff   time.Duration
	log       Logger
	name      string

	mu       sync.Mutex
	state    int // breakerClosed, breakerOpen, breakerHalfOpen
	failures int
	retryAt  time.Time
	openedAt time.Time
	refused  uint64
	opens    uint64
}

const (
	breakerClosed = iota
	breakerOpen
	breakerHalfOpen
)

var breakerNames = [...]string{"closed", "open", "half-open"}

// allow says whether an operation may run now; probe: it is the half-open probe.
func (b *breaker) allow(now time.Time) (probe bool, err error) {
	if b.threshold <= 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return false, nil
	case breakerOpen:
		if now.Before(b.retryAt) {
			b.refused++
			return false, ErrCircuitOpen
		}
		b.state = breakerHalfOpen
		return true, nil
	default: // half-open: the probe is in flight
		b.refused++
		return false, ErrCircuitOpen
	}
}

func (b *breaker) success(probe bool) {
	if b.threshold <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	if probe && b.state == breakerHalfOpen {
		b.state = breakerClosed
		b.log.Log("info", fmt.Sprintf("%s: circuit closed: Redis answers again (open for %v, %d operations refused meanwhile)",
			b.name, time.Since(b.openedAt).Round(time.Millisecond), b.refused))
		b.refused = 0
	}
}

func (b *breaker) failure(probe bool, err error, now time.Time) {
	if b.threshold <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	switch {
	case probe && b.state == breakerHalfOpen:
		b.state, b.retryAt = breakerOpen, now.Add(b.backoff)
	case b.state == breakerClosed && b.failures >= b.threshold:
		b.state, b.retryAt, b.openedAt = breakerOpen, now.Add(b.backoff), now
		b.opens++
		b.log.Log("error", fmt.Sprintf("%s: circuit open after %d consecutive failures (last: %v): failing fast, probing every %v",
			b.name, b.failures, err, b.backoff))
	}
}

func (b *breaker) status() BreakerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BreakerStatus{State: breakerNames[b.state], Opens: b.opens, ConsecutiveFailures: b.failures}
}
