package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"fff/internal/logging"
)

// envLogFormat sets the default of --log-format.
const envLogFormat = "FFF_LOG_FORMAT"

func defaultLogFormat() string {
	if f := os.Getenv(envLogFormat); f != "" {
		return f
	}
	return "text"
}

// setupLogging points zerolog's global logger at stderr. fff is an
// interactive command, so its warnings read as other tools' do ("fff:
// warning: …"), whether or not stderr is a terminal; JSON lines only when
// asked for (--log-format json, FFF_LOG_FORMAT=json). fffd's logs are
// structured (internal/logging), for log collectors.
func setupLogging(level, format string) error {
	switch format {
	case "text":
		l, err := logging.New(io.Discard, level, "json")
		if err != nil {
			return usageErrorf("--%s", err)
		}
		textLog = &textLogWriter{w: os.Stderr}
		log.Logger = l.Output(textLog)
	case "json":
		l, err := logging.New(os.Stderr, level, "json")
		if err != nil {
			return usageErrorf("--%s", err)
		}
		log.Logger, textLog = l, nil
	default:
		return usageErrorf("--log-format %q (or %s): use text or json", format, envLogFormat)
	}
	return nil
}

// logFormat is the --log-format in effect, for a child process.
func logFormat() string {
	if textLog == nil {
		return "json"
	}
	return "text"
}

// stampLogLines makes text log lines start with the time, for a process
// whose stderr is a log file (a daemonized fff mount).
func stampLogLines() {
	if textLog != nil {
		textLog.stamp = true
	}
}

// textLog is the text writer setupLogging installed, if any.
var textLog *textLogWriter

// textLogWriter renders zerolog's JSON events as lines for people:
// "fff: warning: skipping symlink to a directory (path=/a/b)". Fields are
// sorted by name, so a line reads the same every time.
type textLogWriter struct {
	w     io.Writer
	stamp bool
}

func (t *textLogWriter) Write(p []byte) (int, error) {
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber() // an inode number or offset keeps all its digits
	if err := dec.Decode(&ev); err != nil {
		return t.w.Write(p) // not an event: pass it through
	}
	if _, err := io.WriteString(t.w, formatLogLine(ev, t.stamp)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// formatLogLine renders one event; stamp puts its time first.
func formatLogLine(ev map[string]any, stamp bool) string {
	var b strings.Builder
	if ts, ok := ev[zerolog.TimestampFieldName].(string); stamp && ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			ts = t.Format(time.DateTime)
		}
		b.WriteString(ts + " ")
	}
	b.WriteString("fff: ")
	switch lvl, _ := ev[zerolog.LevelFieldName].(string); lvl {
	case "", zerolog.LevelInfoValue:
	case zerolog.LevelWarnValue:
		b.WriteString("warning: ")
	default:
		b.WriteString(lvl + ": ")
	}
	msg, _ := ev[zerolog.MessageFieldName].(string)
	b.WriteString(msg)
	if e, ok := ev[zerolog.ErrorFieldName]; ok {
		if msg != "" {
			b.WriteString(": ")
		}
		fmt.Fprint(&b, e)
	}
	var keys []string
	for k := range ev {
		switch k {
		case zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName, zerolog.ErrorFieldName:
		default:
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		fields := make([]string, len(keys))
		for i, k := range keys {
			v, err := json.Marshal(ev[k])
			s := string(v)
			if str, ok := ev[k].(string); ok && !strings.ContainsAny(str, " \t\n\"=,()") && str != "" {
				s = str // unquoted when it reads unambiguously
			} else if err != nil {
				s = fmt.Sprint(ev[k])
			}
			fields[i] = k + "=" + s
		}
		b.WriteString(" (" + strings.Join(fields, ", ") + ")")
	}
	b.WriteByte('\n')
	return b.String()
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool { return logging.IsTerminal(f) }
