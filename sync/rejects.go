package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"go.uber.org/zap"
)

// CodeRejected is the failure code of a source row that could not be
// read as a user (a RecordError with an external id): listed by
// `failures` with its line and reason, counted as a terminal failure,
// and logged only when first rejected (issue 13: 60k known rejects were
// logged again on every run, one write each). It is cleared when the row
// is fixed.
const CodeRejected = "rejected"

// rejectHash identifies a rejection by its reason, not its line: a row
// that moves in the export is still a known reject. It never equals a
// content hash.
func rejectHash(reason string) string {
	sum := sha256.Sum256([]byte(reason))
	return "rejected:" + hex.EncodeToString(sum[:8])
}

// rejectRow counts a bad source row and queues it to be looked up in the
// store by batch; a row without an external id cannot be kept in the
// failures, and is logged at once.
func (ru *run) rejectRow(ctx context.Context, re *RecordError) error {
	if re.ExternalID == "" {
		ru.reject(re)
		ru.confirmed.add(re.Print, printRejected, refLine(re.Ref), "", re.Reason)
		return nil
	}
	ru.rejects = append(ru.rejects, re)
	if len(ru.rejects) >= ru.opts.BatchSize {
		return ru.flushRejects(ctx)
	}
	return nil
}

// flushRejects looks the queued bad rows up in the store: a row rejected
// for the same reason before is counted only; a new one is logged and
// stored as a CodeRejected failure. A user with another failure (a write
// in backoff, a duplicate mark) keeps it, and its bad row is logged.
func (ru *run) flushRejects(ctx context.Context) error {
	if len(ru.rejects) == 0 {
		return nil
	}
	ids := make([]string, len(ru.rejects))
	for i, re := range ru.rejects {
		ids[i] = re.ExternalID
	}
	known, err := ru.store.Failures(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up failures: %w", err)
	}
	for _, re := range ru.rejects {
		h := rejectHash(re.Reason)
		msg := re.Ref + ": " + re.Reason
		f, ok := known[re.ExternalID]
		switch {
		case ok && f.Code == CodeRejected && f.Hash == h:
			ru.counts.rejected.Add(1)
			ru.knownRejects++
			ru.outcome(Record{ExternalID: re.ExternalID, Ref: re.Ref}, VerdictReject, ActionRejected)
			if f.Message == msg {
				ru.confirmed.add(re.Print, printRejected, refLine(re.Ref), re.ExternalID, re.Reason)
				continue
			}
			// The row moved: keep its line current, without a log line.
		case ok && f.Code != CodeRejected:
			ru.reject(re)
			continue
		default:
			ru.reject(re)
		}
		stored := Failure{ExternalID: re.ExternalID, Hash: h, Terminal: true, Code: CodeRejected, Message: msg, UpdatedAt: ru.opts.Now()}
		if _, err := ru.store.RecordFailure(ctx, stored); err != nil {
			return fmt.Errorf("record a rejected row: %w", err)
		}
		known[re.ExternalID] = stored
		ru.confirmed.add(re.Print, printRejected, refLine(re.Ref), re.ExternalID, re.Reason)
	}
	ru.rejects = ru.rejects[:0]
	return nil
}

// summarizeKnownRejects logs the run's known rejects in one line.
func (ru *run) summarizeKnownRejects() {
	if ru.knownRejects == 0 {
		return
	}
	ru.log.Info("rows rejected by an earlier run rejected again; not logged one by one",
		zap.Int64("run_id", ru.id), zap.Int64("count", ru.knownRejects),
		zap.String("list", "plugipay-sync failures --code "+CodeRejected))
}
