// Command orders-go is the tutorial's Go service: it publishes to and consumes from the
// "orders" topic with the Go driver github.com/covrom/redispubsub (gocloud.dev/pubsub).
// The Redis server comes from $REDIS_URL, read by the driver.
//
//	orders-go publish N          send N messages
//	orders-go consume GROUP N    receive and acknowledge N messages as a consumer of GROUP
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	_ "github.com/covrom/redispubsub" // registers the redis:// scheme
	"gocloud.dev/pubsub"
)

const topicURL = "redis://orders"

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "publish":
		err = publish(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "consume":
		err = consume(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "usage: orders-go publish N | orders-go consume GROUP N")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders-go:", err)
		os.Exit(1)
	}
}

func publish(count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	ctx := context.Background()
	topic, err := pubsub.OpenTopic(ctx, topicURL)
	if err != nil {
		return err
	}
	defer topic.Shutdown(ctx)
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf(`{"order": %d, "from": "go"}`, i)
		msg := &pubsub.Message{Body: []byte(body), Metadata: map[string]string{"sender": "orders-go"}}
		if err := topic.Send(ctx, msg); err != nil {
			return err
		}
		fmt.Println("sent", body)
	}
	return nil
}

func consume(group, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host, _ := os.Hostname()
	// A consumer name unique per process, as the driver requires.
	url := fmt.Sprintf("redis://%s?topic=orders&consumer=orders-go-%s-%d", group, host, os.Getpid())
	sub, err := pubsub.OpenSubscription(ctx, url)
	if err != nil {
		return err
	}
	defer sub.Shutdown(context.Background())
	// Delivery is at least once: the driver reads this consumer's own unacknowledged
	// entries before new ones, and gocloud sends acks in the background, so an entry
	// can come again before its ack lands. Handle each entry ID once.
	seen := map[string]bool{}
	for len(seen) < n {
		msg, err := sub.Receive(ctx)
		if err != nil {
			return err
		}
		if id := msg.LoggableID; !seen[id] {
			seen[id] = true
			fmt.Printf("received %s from %s\n", msg.Body, msg.Metadata["sender"])
		}
		msg.Ack()
	}
	return nil
}
