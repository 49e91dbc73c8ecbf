package priority

import (
	"context"
	"testing"
)

func TestFrom(t *testing.T) {
	if got := From(context.Background()); got != Background {
		t.Errorf("unmarked: got %v, want background", got)
	}
	ctx := With(context.Background(), Event)
	if got := From(ctx); got != Event {
		t.Errorf("marked: got %v, want event", got)
	}
	if got := From(With(ctx, Background)); got != Background {
		t.Errorf("re-marked: got %v, want background", got)
	}
}
