package msgchannel

import (
	"context"
	"errors"
	"strings"
	"sync"
)

// Manager runs the channel of every app that uses it.
type Manager struct {
	clients []*Client
}

// NewManager returns a manager with one client per app of cfg.Verifier that
// uses the WebSocket channel (App.UsesWebSocket), each configured as cfg
// with its App set. It has no client when no app uses the channel.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("msgchannel: Verifier is required")
	}
	m := &Manager{}
	for _, app := range cfg.Verifier.Apps() {
		if !app.UsesWebSocket() {
			continue
		}
		c := cfg
		c.App = app
		client, err := NewClient(c)
		if err != nil {
			return nil, err
		}
		m.clients = append(m.clients, client)
	}
	return m, nil
}

// Clients returns the manager's clients, by app id.
func (m *Manager) Clients() []*Client { return m.clients }

// AppIDs returns the apps the manager connects for.
func (m *Manager) AppIDs() []string {
	ids := make([]string, len(m.clients))
	for i, c := range m.clients {
		ids[i] = c.AppID()
	}
	return ids
}

// Run runs every client until ctx is done and they have closed cleanly
// (see Client.Run). It returns at once when there is none.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range m.clients {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// Ready is a readiness check (httpapi.Config.ReadyChecks): nil when every
// app's channel is connected, else an error naming each app that is not,
// and why.
func (m *Manager) Ready(context.Context) error {
	var msgs []string
	for _, c := range m.clients {
		if err := c.Ready(); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}
