package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Registration configures who may create accounts and how their credentials behave.
type Registration struct {
	Open                 Toggle        `yaml:"open"`
	Guests               bool          `yaml:"guests"`
	SharedSecret         string        `yaml:"shared_secret"`
	BcryptCost           int           `yaml:"bcrypt_cost"`
	AccessTokenLifetime  time.Duration `yaml:"access_token_lifetime"`
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	LoginTokenLifetime   time.Duration `yaml:"login_token_lifetime"`
}

// RateLimits configures the token buckets that slow down abusive clients.
type RateLimits struct {
	Enabled  bool `yaml:"enabled"`
	Login    Rate `yaml:"login"`
	Register Rate `yaml:"register"`
	Message  Rate `yaml:"message"`
}

// Rate is one token bucket: PerSecond tokens refill each second, up to Burst.
type Rate struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Toggle is on, off, or auto (decided by the server from its situation).
type Toggle string

// Toggle values.
const (
	Auto Toggle = "auto"
	On   Toggle = "true"
	Off  Toggle = "false"
)

// UnmarshalYAML accepts true, false and auto.
func (t *Toggle) UnmarshalYAML(n *yaml.Node) error {
	switch n.Value {
	case "true", "false", "auto":
		*t = Toggle(n.Value)
		return nil
	}
	return fmt.Errorf("want true, false or auto")
}

// Enabled resolves the toggle; auto takes the given default.
func (t Toggle) Enabled(auto bool) bool {
	if t == Auto || t == "" {
		return auto
	}
	return t == On
}

// OpenRegistration reports whether anyone may register without a token: as configured, or
// with auto only while every listener is on loopback (a local trial).
func (c *Config) OpenRegistration() bool {
	return c.Registration.Open.Enabled(c.OnlyLoopback())
}

// NewSharedSecret returns a random secret for shared-secret registration.
func NewSharedSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func defaultRegistration() Registration {
	return Registration{
		Open:               Auto,
		BcryptCost:         12,
		LoginTokenLifetime: 2 * time.Minute,
	}
}

func defaultRateLimits() RateLimits {
	return RateLimits{
		Enabled:  true,
		Login:    Rate{PerSecond: 0.2, Burst: 5},
		Register: Rate{PerSecond: 0.2, Burst: 5},
		Message:  Rate{PerSecond: 10, Burst: 50},
	}
}

func (r *Registration) validate() error {
	if r.BcryptCost < 4 || r.BcryptCost > 31 {
		return keyErr("registration.bcrypt_cost", "must be between 4 and 31")
	}
	if r.AccessTokenLifetime < 0 {
		return keyErr("registration.access_token_lifetime", "must not be negative")
	}
	if r.AccessTokenLifetime > 0 && r.AccessTokenLifetime < time.Second {
		return keyErr("registration.access_token_lifetime", "must be 0 (never expire) or at least 1s")
	}
	if r.RefreshTokenLifetime < 0 {
		return keyErr("registration.refresh_token_lifetime", "must not be negative")
	}
	if r.RefreshTokenLifetime > 0 && r.AccessTokenLifetime == 0 {
		return keyErr("registration.refresh_token_lifetime", "needs access_token_lifetime: refresh tokens only exist for expiring access tokens")
	}
	if r.LoginTokenLifetime < time.Second {
		return keyErr("registration.login_token_lifetime", "must be at least 1s")
	}
	if r.SharedSecret != "" && len(r.SharedSecret) < 8 {
		return keyErr("registration.shared_secret", "must be empty (off) or at least 8 characters")
	}
	return nil
}

func (r *RateLimits) validate() error {
	for name, rate := range map[string]Rate{"login": r.Login, "register": r.Register, "message": r.Message} {
		if rate.PerSecond <= 0 {
			return keyErr("rate_limits."+name+".per_second", "must be above 0")
		}
		if rate.Burst < 1 {
			return keyErr("rate_limits."+name+".burst", "must be at least 1")
		}
	}
	return nil
}
