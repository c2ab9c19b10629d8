package config

// Media configures the media repository (mediaapi).
type Media struct{}

func defaultMedia() Media { return Media{} }

func (m *Media) validate() error { return nil }

// mediaTemplate is the media section of the generated config file.
const mediaTemplate = `media:
  # (no options yet)
`
