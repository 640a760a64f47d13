package coprocess

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coprocess/go/internal/testredis"

	"github.com/gomodule/redigo/redis"
)

func TestRedisStore(t *testing.T) {
	r := testredis.ForTest(t)
	s := NewRedisStore(r.Addr, "gw1:")
	defer s.Close()
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	if err := s.Set("k", "v ünïcode", 0); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get("k"); err != nil || !ok || v != "v ünïcode" {
		t.Fatalf("Get = %q %v %v", v, ok, err)
	}
	// The key lives under the prefix, and only there.
	if v, err := redis.String(raw.Do("GET", "gw1:k")); err != nil || v != "v ünïcode" {
		t.Fatalf("raw GET gw1:k = %q %v", v, err)
	}
	if n, _ := redis.Int(raw.Do("EXISTS", "k")); n != 0 {
		t.Error("key written without its prefix")
	}
	if ttl, _ := redis.Int(raw.Do("PTTL", "gw1:k")); ttl != -1 {
		t.Errorf("ttl 0 set an expiry: PTTL %d", ttl)
	}
	if _, ok, err := s.Get("absent"); ok || err != nil {
		t.Errorf("absent: %v %v", ok, err)
	}
	// Another prefix is another namespace.
	other := NewRedisStore(r.Addr, "gw2:")
	defer other.Close()
	if _, ok, _ := other.Get("k"); ok {
		t.Error("prefixes do not separate keys")
	}

	// TTL honoured: set as the key's expiry, gone afterwards.
	if err := s.Set("short", "v", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := redis.Int(raw.Do("PTTL", "gw1:short")); ttl <= 0 || ttl > 300 {
		t.Errorf("PTTL %d, want 1..300", ttl)
	}
	time.Sleep(400 * time.Millisecond)
	if _, ok, _ := s.Get("short"); ok {
		t.Error("key outlived its TTL")
	}
}

// Two gateway instances sharing one Redis share the host store: what one stores through
// TykStoreData the other reads through TykGetData, with the TTL in seconds honoured.
func TestRedisStoreThroughTheHostFunctions(t *testing.T) {
	r := testredis.ForTest(t)
	node1 := NewRedisStore(r.Addr, "coprocess:")
	node2 := NewRedisStore(r.Addr, "coprocess:")
	defer node1.Close()
	defer node2.Close()
	rec := &recorder{}
	if _, err := New(Host{Store: node1, Logger: rec}); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("nonce-1", "seen", 1); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("secret-key-1", "s3cr3t", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Host{Store: node2, Logger: rec}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := CallHostGet("nonce-1"); err != nil || !ok || v != "seen" {
		t.Fatalf("node2 reads %q %v %v", v, ok, err)
	}
	if v, ok, _ := CallHostGet("secret-key-1"); !ok || v != "s3cr3t" {
		t.Fatalf("node2 reads %q %v", v, ok)
	}
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if ttl, _ := redis.Int(raw.Do("PTTL", "coprocess:nonce-1")); ttl <= 0 || ttl > 1000 {
		t.Errorf("PTTL %d, want 1..1000 for ttl=1s", ttl)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, ok, _ := CallHostGet("nonce-1"); ok {
		t.Error("nonce outlived its 1 s TTL")
	}
	if _, logs := rec.snapshot(); len(logs) != 0 {
		t.Errorf("unexpected logs %q", logs)
	}

	// Redis going away: reads are absent and the failure is logged, never a crash.
	r.Stop()
	time.Sleep(50 * time.Millisecond)
	if _, ok, err := CallHostGet("secret-key-1"); ok || err != nil {
		t.Errorf("with Redis down: ok=%v err=%v", ok, err)
	}
	if _, logs := rec.snapshot(); len(logs) == 0 || logs[0][0] != "error" {
		t.Errorf("Redis failure not logged: %q", logs)
	}
}

// SetIfAbsent is SET NX EX in the shared Redis: of many stores (processes) storing one key
// at once exactly one wins; the TTL is the key's expiry; through the host function it is
// 1 then 0.
func TestRedisStoreSetIfAbsent(t *testing.T) {
	r := testredis.ForTest(t)
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	stores := make([]*RedisStore, 4)
	for i := range stores {
		stores[i] = NewRedisStore(r.Addr, "p:")
		defer stores[i].Close()
	}
	for round := 0; round < 20; round++ {
		key := fmt.Sprintf("nonce-%d", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				stored, err := stores[i%len(stores)].SetIfAbsent(key, fmt.Sprint(i), 120*time.Second)
				if err != nil {
					t.Error(err)
				}
				if stored {
					wins.Add(1)
				}
			}(i)
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins.Load())
		}
		if ttl, _ := redis.Int(raw.Do("TTL", "p:"+key)); ttl <= 0 || ttl > 120 {
			t.Fatalf("TTL %d", ttl)
		}
	}
	if _, err := New(Host{Store: stores[0], Logger: &recorder{}}); err != nil {
		t.Fatal(err)
	}
	if rc, _ := CallHostStoreIfAbsent("k", "v", 0); rc != 1 {
		t.Fatalf("first: %d", rc)
	}
	if ttl, _ := redis.Int(raw.Do("TTL", "p:k")); ttl != -1 {
		t.Errorf("ttl 0 gave TTL %d, want none (-1)", ttl)
	}
	if rc, _ := CallHostStoreIfAbsent("k", "w", 0); rc != 0 {
		t.Fatalf("second: %d", rc)
	}
	if v, _ := redis.String(raw.Do("GET", "p:k")); v != "v" {
		t.Errorf("value %q", v)
	}
}

// logLines is a Logger collecting lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Log(level, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+msg)
	l.mu.Unlock()
}

func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// A hung Redis (SIGSTOP): each operation ends within its one deadline, connection setup
// included; after BreakerFailures failures the circuit opens (one log line) and operations
// fail at once; after the back-off a probe finds Redis answering again (SIGCONT) and the
// circuit closes (one log line).
func TestRedisStoreDeadlineAndBreaker(t *testing.T) {
	r := testredis.ForTest(t)
	logs := &logLines{}
	const timeout = 300 * time.Millisecond
	s := NewRedisStoreWithOptions(r.Addr, RedisOptions{Prefix: "b:", Timeout: timeout, BreakerFailures: 3, BreakerBackoff: 500 * time.Millisecond, Logger: logs})
	defer s.Close()
	if err := s.Set("k", "v", 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	defer r.Resume()
	// Pooled connection (write succeeds, no reply), then new connections (the kernel
	// accepts them into the backlog; nothing answers): each bounded by the one timeout.
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, _, err := s.Get("k")
		el := time.Since(start)
		if err == nil {
			t.Fatal("a paused Redis answered")
		}
		if el < timeout-50*time.Millisecond || el > timeout+700*time.Millisecond {
			t.Errorf("op %d took %v, want about %v", i, el, timeout)
		}
	}
	if st := s.Breaker(); st.State != "open" || st.Opens != 1 {
		t.Fatalf("breaker %+v after 3 failures", st)
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		if _, _, err := s.Get("k"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("open circuit: %v", err)
		}
	}
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("100 operations on an open circuit took %v: not failing fast", el)
	}
	if logs.count("circuit open after 3 consecutive failures") != 1 {
		t.Errorf("open log lines: %q", logs.lines)
	}
	// Still hung after the back-off: the probe fails, the circuit stays open (no new line).
	time.Sleep(550 * time.Millisecond)
	if _, _, err := s.Get("k"); err == nil || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: %v", err)
	}
	if st := s.Breaker(); st.State != "open" || st.Opens != 1 {
		t.Fatalf("after a failed probe %+v", st)
	}
	r.Resume()
	time.Sleep(550 * time.Millisecond)
	if v, ok, err := s.Get("k"); err != nil || !ok || v != "v" {
		t.Fatalf("after SIGCONT: %q %v %v", v, ok, err)
	}
	if st := s.Breaker(); st.State != "closed" {
		t.Fatalf("breaker %+v after a good probe", st)
	}
	if logs.count("circuit open") != 1 || logs.count("circuit closed") != 1 {
		t.Errorf("want one open and one close line: %q", logs.lines)
	}
	// The connections the hung operations used were closed, not pooled.
	if n := s.OpenConns(); n > 2 {
		t.Errorf("%d connections open after recovery", n)
	}
}

// Redis killed and restarted on the same port: the store fails while it is down and works
// again by itself afterwards (dead pooled connections are replaced within the operation).
func TestRedisStoreRecoversAfterRestart(t *testing.T) {
	r := testredis.ForTest(t)
	s := NewRedisStoreWithOptions(r.Addr, RedisOptions{Timeout: 300 * time.Millisecond, BreakerFailures: -1, Logger: &logLines{}})
	defer s.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ { // fill the pool
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Set("k", "v", 0) }()
	}
	wg.Wait()
	r.Kill()
	if _, _, err := s.Get("k"); err == nil {
		t.Fatal("Get with Redis killed succeeded")
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := s.Set("k2", "v", 0); err != nil {
			t.Fatalf("op %d after restart: %v", i, err)
		}
	}
}
