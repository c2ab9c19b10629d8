package config

import "time"

// Push configures push notifications: delivery to push gateways (client-server API, "Push
// Notifications"; push gateway API).
type Push struct {
	// AllowPrivateAddresses lets pushers reach gateways on private, loopback and link-local
	// addresses, e.g. a gateway on the same host.
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
	// AllowHTTP accepts gateway URLs over plain HTTP; the spec requires HTTPS.
	AllowHTTP bool `yaml:"allow_http"`
	// Timeout bounds one request to a gateway.
	Timeout time.Duration `yaml:"timeout"`
	// RetryInitial is the first wait after a failed delivery; each further failure doubles it,
	// up to RetryMax.
	RetryInitial time.Duration `yaml:"retry_initial"`
	RetryMax     time.Duration `yaml:"retry_max"`
	// GiveUpAfter drops a notification that could not be delivered for this long (the pusher
	// goes on with the next one); 0 retries forever.
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

func defaultPush() Push {
	return Push{Timeout: 15 * time.Second, RetryInitial: time.Second, RetryMax: 10 * time.Minute, GiveUpAfter: 24 * time.Hour}
}

func (p *Push) validate() error {
	if p.Timeout < 100*time.Millisecond {
		return keyErr("push.timeout", "must be at least 100ms")
	}
	if p.RetryInitial < 10*time.Millisecond {
		return keyErr("push.retry_initial", "must be at least 10ms")
	}
	if p.RetryMax < p.RetryInitial {
		return keyErr("push.retry_max", "must be at least retry_initial")
	}
	if p.GiveUpAfter < 0 {
		return keyErr("push.give_up_after", "must not be negative (0 retries forever)")
	}
	return nil
}

// pushTemplate is the push section of the generated config file.
const pushTemplate = `push:
  # Let pushers reach push gateways on private, loopback and link-local addresses (a gateway on
  # this host or network). Off, such gateways are refused when a client sets the pusher and
  # whenever a request would connect to one. Default: false
  allow_private_addresses: {{.Push.AllowPrivateAddresses}}
  # Accept gateway URLs over plain http://; the spec requires https://. Default: false
  allow_http: {{.Push.AllowHTTP}}
  # Time limit of one request to a gateway. Default: 15s
  timeout: {{.Push.Timeout}}
  # Wait after a failed delivery before the next try, doubling up to retry_max.
  # Default: retry_initial 1s, retry_max 10m0s
  retry_initial: {{.Push.RetryInitial}}
  retry_max: {{.Push.RetryMax}}
  # Drop a notification a gateway has refused to take for this long and go on with the next;
  # 0 retries forever. Default: 24h0m0s
  give_up_after: {{.Push.GiveUpAfter}}
`
