// Command goclient drives the real Go driver github.com/covrom/redispubsub through
// the gocloud.dev/pubsub API, so that Python tests and benchmarks can check what it
// writes and reads. Every subcommand takes the Redis server from $REDIS_URL (read by
// the driver itself). Built and cached by hack/go-interop.sh; never copy the driver's
// source here, it is only imported as a module.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/covrom/redispubsub" // registers the redis:// scheme
	"github.com/go-redis/redis/v9"
	"gocloud.dev/pubsub"
)

const usage = `usage: goclient <command> [flags]   (Redis server from $REDIS_URL)

  publish -topic URL            JSON lines {"body":"<base64>","metadata":{..}|null} on stdin,
                                sent one at a time in order; prints {"id":"<entry id>"} per message
  receive -sub URL -n N [-timeout 30s] [-noack] [-raw]
                                prints {"body","metadata","id","loggable_id","fields"} per distinct
                                entry (-raw: per delivery, re-deliveries included)
  bench-publish -topic URL -n N -size BYTES -concurrency C
  bench-receive -sub URL -n N -concurrency C [-timeout 120s]
  open-topic -topic URL / open-sub -sub URL
                                only open; on failure the error on stderr, exit 2
  json-headers                  metadata objects (or null) per line on stdin -> base64 of
                                Go's json.Marshal(map[string]string), what the driver writes
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "publish":
		err = publish(args)
	case "receive":
		err = receive(args)
	case "bench-publish":
		err = benchPublish(args)
	case "bench-receive":
		err = benchReceive(args)
	case "open-topic", "open-sub":
		os.Exit(open(cmd, args))
	case "json-headers":
		err = jsonHeaders()
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "goclient: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "goclient %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// parse parses a subcommand's flags and rejects positional arguments.
func parse(fs *flag.FlagSet, args []string) {
	fs.Parse(args) // ExitOnError
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "goclient %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		os.Exit(2)
	}
}

func required(fs *flag.FlagSet, name, value string) {
	if value == "" {
		fmt.Fprintf(os.Stderr, "goclient %s: -%s is required\n", fs.Name(), name)
		os.Exit(2)
	}
}

// inMessage is one input line of publish. A JSON null or absent "metadata" decodes to
// a nil map (the driver writes `null`), {} to an empty non-nil map (it writes `{}`).
type inMessage struct {
	Body     []byte            `json:"body"` // base64 in JSON
	Metadata map[string]string `json:"metadata"`
}

// lines calls fn for each non-empty line of r (no length limit).
func lines(r io.Reader, fn func(lineNo int, line []byte) error) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func publish(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	topicURL := fs.String("topic", "", "topic URL, redis://<stream>[?maxlen=N]")
	parse(fs, args)
	required(fs, "topic", *topicURL)

	var msgs []inMessage // read everything first: bad input sends nothing
	err := lines(os.Stdin, func(n int, line []byte) error {
		var m inMessage
		if err := decodeStrict(line, &m); err != nil {
			return fmt.Errorf("stdin line %d: %v", n, err)
		}
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return err
	}

	ctx := context.Background()
	topic, err := pubsub.OpenTopic(ctx, *topicURL)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for i, m := range msgs {
		var id string
		msg := &pubsub.Message{Body: m.Body, Metadata: m.Metadata,
			// The driver hands the XADD reply (the entry ID) to AfterSend.
			AfterSend: func(as func(any) bool) error { as(&id); return nil }}
		// One Send at a time: Send returns once its batch is written, so entries keep
		// the input order.
		if err := topic.Send(ctx, msg); err != nil {
			topic.Shutdown(ctx)
			return fmt.Errorf("message %d: %v", i+1, err)
		}
		writeJSON(out, map[string]string{"id": id})
	}
	if err := out.Flush(); err != nil {
		return err
	}
	return topic.Shutdown(ctx)
}

// outMessage is one output line of receive.
type outMessage struct {
	Body       []byte            `json:"body"`
	Metadata   map[string]string `json:"metadata"` // gocloud turns empty metadata into nil
	ID         string            `json:"id"`       // the stream entry ID (from the driver's As)
	LoggableID string            `json:"loggable_id"`
	Fields     map[string][]byte `json:"fields"` // the raw entry fields, base64
}

func receive(args []string) error {
	fs := flag.NewFlagSet("receive", flag.ExitOnError)
	subURL := fs.String("sub", "", "subscription URL, redis://<group>?topic=<stream>&consumer=<name>")
	n := fs.Int("n", 1, "number of distinct messages (entry IDs) to receive")
	timeout := fs.Duration("timeout", 30*time.Second, "overall deadline for the n messages")
	noack := fs.Bool("noack", false, "do not Ack; the driver then hands this consumer its oldest pending entry "+
		"again on every Receive, so only n=1 (or -raw) completes")
	raw := fs.Bool("raw", false, "print every delivery, re-deliveries included, and count them toward n")
	parse(fs, args)
	required(fs, "sub", *subURL)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sub, err := pubsub.OpenSubscription(ctx, *subURL)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	seen := map[string]bool{}
	redeliveries := 0
	for count := 0; count < *n; {
		m, err := sub.Receive(ctx)
		if err != nil {
			out.Flush()
			// No Shutdown: the driver's blocking XREADGROUP (BLOCK 0) ignores the context.
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %v with %d of %d messages (%d re-deliveries)",
					*timeout, count, *n, redeliveries)
			}
			return fmt.Errorf("after %d of %d messages: %v", count, *n, err)
		}
		o := outMessage{Body: m.Body, Metadata: m.Metadata, LoggableID: m.LoggableID}
		var xm redis.XMessage
		if m.As(&xm) {
			o.ID = xm.ID
			o.Fields = map[string][]byte{}
			for k, v := range xm.Values {
				if s, ok := v.(string); ok {
					o.Fields[k] = []byte(s)
				}
			}
		} else {
			o.ID = m.LoggableID
		}
		// The driver re-delivers an entry whose ack has not reached Redis yet (gocloud
		// sends acks asynchronously, and the driver reads this consumer's pending
		// entries before new ones); those repeats are skipped unless -raw.
		again := seen[o.ID]
		seen[o.ID] = true
		if again {
			redeliveries++
		}
		if !again || *raw {
			count++
			writeJSON(out, o)
			if err := out.Flush(); err != nil {
				return err
			}
		}
		if !*noack {
			m.Ack()
		}
	}
	if redeliveries > 0 {
		fmt.Fprintf(os.Stderr, "goclient receive: %d re-deliveries of already received entries\n", redeliveries)
	}
	// Shutdown flushes the pending acks; bounded in case Redis went away.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	return sub.Shutdown(sctx)
}

type benchResult struct {
	Messages   int64   `json:"messages"`
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"rate"`
	Duplicates int64   `json:"duplicates,omitempty"` // bench-receive: re-deliveries seen
}

func report(n int64, d time.Duration, dups int64) {
	s := d.Seconds()
	writeJSON(os.Stdout, benchResult{Messages: n, Seconds: s, Rate: float64(n) / s, Duplicates: dups})
}

func benchPublish(args []string) error {
	fs := flag.NewFlagSet("bench-publish", flag.ExitOnError)
	topicURL := fs.String("topic", "", "topic URL")
	n := fs.Int("n", 10000, "messages")
	size := fs.Int("size", 100, "body size in bytes")
	conc := fs.Int("concurrency", 16, "goroutines calling Send concurrently")
	parse(fs, args)
	required(fs, "topic", *topicURL)
	if *n < 1 || *size < 0 || *conc < 1 {
		return errors.New("need -n >= 1, -size >= 0, -concurrency >= 1")
	}

	ctx := context.Background()
	topic, err := pubsub.OpenTopic(ctx, *topicURL)
	if err != nil {
		return err
	}
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// gocloud's batcher groups concurrent Sends (the driver allows batches of
			// up to 100 and 100 batches in flight); each Send waits for its batch.
			for next.Add(1) <= int64(*n) {
				err := topic.Send(ctx, &pubsub.Message{Body: body, Metadata: map[string]string{"k": "v"}})
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := topic.Shutdown(ctx); err != nil {
		return err
	}
	report(int64(*n), time.Since(start), 0)
	return nil
}

func benchReceive(args []string) error {
	fs := flag.NewFlagSet("bench-receive", flag.ExitOnError)
	subURL := fs.String("sub", "", "subscription URL")
	n := fs.Int("n", 10000, "distinct messages to receive and ack")
	conc := fs.Int("concurrency", 16, "goroutines calling Receive concurrently")
	timeout := fs.Duration("timeout", 120*time.Second, "overall deadline")
	parse(fs, args)
	required(fs, "sub", *subURL)
	if *n < 1 || *conc < 1 {
		return errors.New("need -n >= 1, -concurrency >= 1")
	}

	tctx, tcancel := context.WithTimeout(context.Background(), *timeout)
	defer tcancel()
	sub, err := pubsub.OpenSubscription(tctx, *subURL)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(tctx)
	defer stop()
	var mu sync.Mutex
	seen := make(map[string]bool, *n)
	var dups int64
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := sub.Receive(ctx)
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() != context.Canceled {
						firstErr = err
					}
					mu.Unlock()
					stop()
					return
				}
				m.Ack()
				// Count distinct entries: the driver can hand out an entry again
				// (its pending-entries read races with the asynchronous acks).
				mu.Lock()
				if seen[m.LoggableID] {
					dups++
				}
				seen[m.LoggableID] = true
				done := len(seen) >= *n
				mu.Unlock()
				if done {
					stop()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(seen) < *n {
		return fmt.Errorf("received %d of %d messages: %v", len(seen), *n, firstErr)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := sub.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown (flushing acks): %v", err)
	}
	report(int64(len(seen)), elapsed, dups)
	return nil
}

// open only opens the topic or subscription (a subscription runs XGROUP CREATE ...
// MKSTREAM on open); exit 2 with the error on stderr if that fails.
func open(cmd string, args []string) int {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	name := "sub"
	if cmd == "open-topic" {
		name = "topic"
	}
	u := fs.String(name, "", name+" URL")
	parse(fs, args)
	required(fs, name, *u)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if cmd == "open-topic" {
		var t *pubsub.Topic
		if t, err = pubsub.OpenTopic(ctx, *u); err == nil {
			t.Shutdown(ctx)
		}
	} else {
		var s *pubsub.Subscription
		if s, err = pubsub.OpenSubscription(ctx, *u); err == nil {
			s.Shutdown(ctx)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// jsonHeaders prints, per input line, base64 of json.Marshal(map[string]string) as
// the driver does it for the `headers` field (nil map for a JSON null).
func jsonHeaders() error {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	return lines(os.Stdin, func(n int, line []byte) error {
		var md map[string]string
		if err := decodeStrict(line, &md); err != nil {
			return fmt.Errorf("stdin line %d: %v", n, err)
		}
		b, err := json.Marshal(md)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, base64.StdEncoding.EncodeToString(b))
		return nil
	})
}

func writeJSON(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain types are marshalled here
	}
	w.Write(append(b, '\n'))
}
