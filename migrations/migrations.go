// Package migrations embeds the gateway's SQL migrations (goose format), so
// that the binary applies them at start and `gateway migrate` needs no files.
package migrations

import "embed"

// FS holds the *.sql migrations.
//
//go:embed *.sql
var FS embed.FS
