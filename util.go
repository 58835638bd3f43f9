package heal

import (
	"errors"
	"slices"
	"strings"
)

func sortInt64(s []int64) { slices.Sort(s) }

func joinErrs(errs []error) error { return errors.Join(errs...) }

func sortAlarms(as []Alarm) {
	slices.SortFunc(as, func(a, b Alarm) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return a.Window.Start.Compare(b.Window.Start)
	})
}
