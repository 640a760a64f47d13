package coprocess

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"coprocess/go/pb"
)

// Many goroutines dispatch every kind of call while one goroutine rewrites the global file
// and calls Reload in a loop (valid generations a and b, and broken files that must be
// refused). Every single result is checked: no dispatch may fail or see a mixed state.
func TestConcurrentDispatchDuringReload(t *testing.T) {
	d, rec := newDispatcher(t, nil)
	writeGlobalConfig(t, globalConfig("a"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		writeGlobalConfig(t, globalConfig("a"))
		_ = d.Reload()
	})

	const workers = 8
	iterations := 1500
	if testing.Short() {
		iterations = 200
	}
	var relays, logged atomic.Int64
	var stop atomic.Bool
	var reloads, refused atomic.Int64
	reloadDone := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			if i%5 == 4 {
				writeGlobalConfig(t, `{"RelayEvent": {"event_name": `)
				if err := d.Reload(); !errors.Is(err, ErrConfig) {
					reloadDone <- fmt.Errorf("Reload of a broken file: %v", err)
					return
				}
				refused.Add(1)
				continue
			}
			writeGlobalConfig(t, globalConfig([]string{"a", "b"}[i%2]))
			if err := d.Reload(); err != nil {
				reloadDone <- fmt.Errorf("Reload: %w", err)
				return
			}
			reloads.Add(1)
		}
		reloadDone <- nil
	}()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < iterations; i++ {
				if err := oneCall(d, rnd, w, i, &relays, &logged); err != nil {
					errs <- fmt.Errorf("worker %d call %d: %w", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	stop.Store(true)
	if err := <-reloadDone; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reloads.Load() < 2 || refused.Load() < 1 {
		t.Errorf("the reloader hardly ran: %d reloads, %d refused", reloads.Load(), refused.Load())
	}
	events, logs := rec.snapshot()
	eventLogs := 0
	for _, l := range logs {
		if l[0] == "warning" && strings.Contains(l[1], "AuthFailure") && strings.Contains(l[1], `"api1"`) {
			eventLogs++
		}
	}
	if int64(eventLogs) != logged.Load() {
		t.Errorf("%d LogEvent lines for %d DispatchEvent calls", eventLogs, logged.Load())
	}
	if int64(len(events)) != relays.Load() {
		t.Errorf("%d relayed events for %d DispatchEvent calls", len(events), relays.Load())
	}
	for _, e := range events {
		if (e[0] != "Relayed-a" && e[0] != "Relayed-b") || e[1] != string(event("RelayEvent")) {
			t.Fatalf("bad relayed event %q", e)
		}
	}
	t.Logf("%d calls, %d reloads, %d broken files refused, %d events relayed, %d logged", workers*iterations, reloads.Load(), refused.Load(), len(events), eventLogs)
}

func oneCall(d *Dispatcher, rnd *rand.Rand, w, i int, relays, logged *atomic.Int64) error {
	switch rnd.Intn(7) {
	case 0: // a known token: exactly its session template
		tok, rate := "tok-gold", 100.0
		if rnd.Intn(2) == 0 {
			tok, rate = "tok-free", 5
		}
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer " + tok}))
		if err != nil {
			return err
		}
		if out.Session.GetRate() != rate || out.Metadata["token"] != tok {
			return fmt.Errorf("token %s: session %v metadata %v", tok, out.Session, out.Metadata)
		}
	case 1: // an unknown token: no session
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": fmt.Sprintf("Bearer bad-%d-%d", w, i)}))
		if err != nil {
			return err
		}
		if out.Session != nil || len(out.Metadata) != 0 || out.Request.ReturnOverrides.GetResponseCode() != -1 {
			return fmt.Errorf("unknown token answered %v", out)
		}
	case 2: // per-API InjectHeaders
		out, err := d.Dispatch(requestObject(pb.HookType_Post, "InjectHeaders", map[string]string{"Cookie": "c"}))
		if err != nil {
			return err
		}
		r := out.Request
		if len(r.SetHeaders) != 2 || r.SetHeaders["X-Plugin"] != "coprocess" || len(r.DeleteHeaders) != 1 {
			return fmt.Errorf("InjectHeaders answered %v", r)
		}
	case 3: // the global file's section: generation a or b, never anything else
		o := requestObject(pb.HookType_Pre, "InjectHeaders:global", nil)
		delete(o.Spec, "config_data")
		out, err := d.Dispatch(o)
		if err != nil {
			return err
		}
		if g := out.Request.SetHeaders["X-Gen"]; (g != "a" && g != "b") || len(out.Request.SetHeaders) != 1 {
			return fmt.Errorf("global section answered %v", out.Request.SetHeaders)
		}
	case 4: // one of many distinct config_data values
		n := rnd.Intn(40)
		o := requestObject(pb.HookType_Pre, "InjectHeaders", nil)
		o.Spec["config_data"] = fmt.Sprintf(`{"InjectHeaders": {"add": {"X-Variant": "%d"}}}`, n)
		out, err := d.Dispatch(o)
		if err != nil {
			return err
		}
		if v := out.Request.SetHeaders["X-Variant"]; v != fmt.Sprint(n) {
			return fmt.Errorf("config_data variant %d answered %q", n, v)
		}
	case 5: // an event in, relayed out
		if err := d.DispatchEvent(event("RelayEvent")); err != nil {
			return err
		}
		relays.Add(1)
	case 6: // an event in, logged through CoProcessLog
		if err := d.DispatchEvent(event("LogEvent")); err != nil {
			return err
		}
		logged.Add(1)
	}
	return nil
}
