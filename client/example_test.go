package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tidings-io/tidings/client"
)

// A backend publishes with three lines: New, Publish, and the error
// check. brokerURL is the broker's base URL, "https://broker.example.com"
// say, with Config.APIKey set when the broker has API keys.
func ExampleClient_Publish() {
	c, err := client.New(client.Config{URL: brokerURL})
	if err != nil {
		log.Fatal(err)
	}
	p, err := c.Publish(context.Background(), "orders.1842", map[string]string{"status": "paid"})
	if err != nil {
		log.Fatal(err) // an *client.Error: client.IsCode(err, protocol.CodeForbidden), …
	}
	fmt.Println("stored on", p.Topic) // and p.ID, p.Offset, p.Epoch
	// Output: stored on orders.1842
}

// Several messages in one request, stored all or nothing, one result per
// message in order.
func ExampleClient_PublishBatch() {
	c, err := client.New(client.Config{URL: brokerURL})
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.PublishBatch(context.Background(), []client.Message{
		{Topic: "prices.eur.usd", Data: map[string]float64{"bid": 1.0842}},
		{Topic: "prices.gbp.usd", Data: map[string]float64{"bid": 1.2710}},
		// Your own key makes your own retries safe too.
		{Topic: "orders.1843", Data: "paid", IdempotencyKey: "order-1843-paid"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range res {
		fmt.Println(p.Topic)
	}
	// Output:
	// prices.eur.usd
	// prices.gbp.usd
	// orders.1843
}

// A subscriber gets the messages of a pattern on a channel, in order per
// topic; it reconnects and resumes on its own until ctx is done or Close.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, err := client.New(client.Config{URL: brokerURL})
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, []string{"chat.>"}, client.SubscribeOptions{
		OnReset: func(r client.Reset) { log.Printf("%s: messages may be missing, reload", r.Topic) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	for _, text := range []string{"hello", "world"} {
		if _, err := c.Publish(ctx, "chat.room-1", map[string]string{"text": text}); err != nil {
			log.Fatal(err)
		}
	}
	for range 2 {
		d := <-sub.C()
		fmt.Printf("%s via %s: %s\n", d.Topic, d.Sub, d.Data)
	}
	// Output:
	// chat.room-1 via chat.>: {"text":"hello"}
	// chat.room-1 via chat.>: {"text":"world"}
}
