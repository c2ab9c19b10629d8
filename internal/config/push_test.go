package config

import (
	"errors"
	"testing"
	"time"
)

func TestPushValidate(t *testing.T) {
	for name, change := range map[string]func(*Push){
		"push.timeout":       func(p *Push) { p.Timeout = 0 },
		"push.retry_initial": func(p *Push) { p.RetryInitial = time.Millisecond },
		"push.retry_max":     func(p *Push) { p.RetryMax = p.RetryInitial / 2 },
		"push.give_up_after": func(p *Push) { p.GiveUpAfter = -time.Second },
	} {
		cfg := Default("example.org")
		change(&cfg.Push)
		var ke *KeyError
		if err := cfg.Validate(); !errors.As(err, &ke) || ke.Key != name {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
	if err := Default("example.org").Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}
