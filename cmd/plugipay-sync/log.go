package main

import (
	"fmt"
	"io"
	"runtime"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the zap logger: JSON (stable keys, for log pipelines)
// or console (for people), at the configured level, writing to w. Unless
// pii is set, emails and phone numbers are masked (see redactCore).
func newLogger(c LogConfig, w io.Writer, pii bool) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var enc zapcore.Encoder
	switch c.Format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	var core zapcore.Core = zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	if !pii {
		core = redactCore{core}
	}
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

func goVersion() string { return runtime.Version() }
