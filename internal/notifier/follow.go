package notifier

import (
	"context"
	"log/slog"
	"time"
)

// maxBackoff caps the pause between failed attempts of a follower.
const maxBackoff = 30 * time.Second

// Follow runs a stream consumer until ctx ends or the notifier closes: it calls step until step
// reports that it has caught up, then sleeps until stream moves past the position step reached
// for key. A failed step leaves the consumer's cursor where it was and is tried again after a
// pause that doubles up to 30 s, so nothing is skipped. n may be nil (tests): Follow then stops
// at the first catch-up.
func (n *Notifier) Follow(ctx context.Context, log *slog.Logger, stream, key string, step func(context.Context) (pos int64, more bool, err error)) {
	var backoff time.Duration
	for {
		pos, more, err := step(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
			log.Error("stream consumer failed", "stream", stream, "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if more {
			continue
		}
		if n == nil {
			<-ctx.Done()
			return
		}
		if err := n.Wait(ctx, map[string]int64{stream: pos}, key); err != nil {
			return // cancelled, or the notifier closed: the server is stopping
		}
	}
}
