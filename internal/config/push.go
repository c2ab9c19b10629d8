package config

// Push configures push notifications: delivery to push gateways.
type Push struct{}

func defaultPush() Push { return Push{} }

func (p *Push) validate() error { return nil }

// pushTemplate is the push section of the generated config file.
const pushTemplate = `push:
  # (no options yet)
`
