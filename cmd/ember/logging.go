package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/emberfhir/ember/server"
)

// logFlags choose the log's format and level.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", env("EMBER_LOG_FORMAT", "json"),
		"log format: json (one object a line, for collectors) or text (key=value, for a terminal) (env EMBER_LOG_FORMAT)")
	fs.StringVar(&l.level, "log-level", env("EMBER_LOG_LEVEL", "info"),
		"least severe level logged: debug (adds one line per HTTP request), info, warn or error (env EMBER_LOG_LEVEL)")
}

// logger is the process's logger on w. Records logged with a request's
// context carry its request_id (server.LogHandler).
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(l.format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", l.format)
	}
	return slog.New(server.LogHandler(h)), nil
}
