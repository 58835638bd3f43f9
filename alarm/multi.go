package alarm

import (
	"context"
	"errors"
	"sync"

	"github.com/selfheal/heal"
)

// Multi returns an alarmer that sends each alarm to every one of alarmers
// at once, and waits for all. Its error joins theirs (errors.Join). As the
// engine retries a failed Alarm on its next cycle, an alarmer that
// succeeded may then be told again: receivers should tolerate duplicates.
// nil alarmers are skipped.
func Multi(alarmers ...heal.Alarmer) heal.Alarmer {
	var as []heal.Alarmer
	for _, a := range alarmers {
		if a != nil {
			as = append(as, a)
		}
	}
	return multi(as)
}

type multi []heal.Alarmer

func (m multi) Alarm(ctx context.Context, a heal.Alarm) error {
	if len(m) == 1 {
		return m[0].Alarm(ctx, a)
	}
	errs := make([]error, len(m))
	var wg sync.WaitGroup
	for i, al := range m {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = al.Alarm(ctx, a)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
