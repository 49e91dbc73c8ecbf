package transport

import "time"

// Observer is the metrics hook: Metrics implements it, so
// every API the module speaks (Plugipay, PayGate, Pin, HubSpot) is counted
// the same way. A nil Observer observes nothing.
type Observer interface {
	// ObserveAttempt is called after every attempt, and after a limiter
	// wait that ended the call before an attempt was sent.
	ObserveAttempt(Attempt)
	// ObserveCall is called once per Client.Do, after its last attempt.
	ObserveCall(Call)
}

// Attempt describes one attempt.
type Attempt struct {
	API, Op, Method string
	// N counts attempts from 1.
	N int
	// Status is the answer's status, 0 when none arrived.
	Status int
	// Err is the attempt's failure, nil on success.
	Err *Error
	// Duration is the attempt's own time, limiter wait excluded.
	Duration time.Duration
	// Bucket names the rate limiter the attempt waited for ("read",
	// "write", "all"); Waited is how long.
	Bucket string
	Waited time.Duration
	// RateLimited is true when the server answered 429.
	RateLimited bool
	// Retry is true when another attempt follows, for Reason, after Delay.
	Retry  bool
	Reason string
	Delay  time.Duration
}

// Call describes one finished Client.Do.
type Call struct {
	API, Op, Method string
	// Code is "ok" or the failure's outcome code (Options.Code).
	Code string
	// Err is the call's failure, nil on success.
	Err *Error
	// Attempts is how many attempts were sent.
	Attempts int
	// Duration is the call's whole time: attempts, backoff and limiter
	// waits.
	Duration time.Duration
}
