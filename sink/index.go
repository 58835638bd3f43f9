package sink

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"

	"github.com/selfheal/heal"
)

// The write-time presence index, in each file's key-value metadata.
const (
	mdSlots = "heal.slots" // base64 of heal.Slots.MarshalBinary at the grain, over the span of the file's rows
	mdRows  = "heal.rows"  // decimal row count
	mdCRC   = "heal.crc"   // hex crc32 of the slots bytes, rows, first and last time
)

// indexCRC binds the slots to the file's row count and first and last
// times, so that an index copied onto another file, or a file rewritten by
// another tool that kept the metadata, is detected.
func indexCRC(slots []byte, rows int64, first, last time.Time) uint32 {
	h := crc32.NewIEEE()
	h.Write(slots)
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(rows))
	binary.LittleEndian.PutUint64(b[8:], uint64(first.UnixNano()))
	binary.LittleEndian.PutUint64(b[16:], uint64(last.UnixNano()))
	h.Write(b[:])
	return h.Sum32()
}

// firstLast returns the earliest and latest instants in s, zero if empty.
func firstLast(s heal.Slots) (first, last time.Time) {
	n := 0
	for t := range s.All() {
		if n == 0 {
			first = t
		}
		last = t
		n++
	}
	return first, last
}

// encodeIndex returns the metadata values for a file holding rows rows in
// the slots s.
func encodeIndex(s heal.Slots, rows int64) (slots, nrows, crc string, err error) {
	b, err := s.MarshalBinary()
	if err != nil {
		return "", "", "", err
	}
	first, last := firstLast(s)
	return base64.StdEncoding.EncodeToString(b), strconv.FormatInt(rows, 10),
		fmt.Sprintf("%08x", indexCRC(b, rows, first, last)), nil
}

// decodeIndex returns the slots a file's index says it holds, and their
// encoding, or ok=false
// when the index is missing, malformed, not at ds's grain, reaches outside
// the partition p, or disagrees with the file (numRows is the footer's
// count). A
// valid index also promises one row per slot: heal never writes a file
// holding a slot twice.
func decodeIndex(ds *heal.Dataset, p heal.Partition, get func(string) *string, numRows int64) (heal.Slots, []byte, bool) {
	sv, rv, cv := get(mdSlots), get(mdRows), get(mdCRC)
	if sv == nil || rv == nil || cv == nil {
		return heal.Slots{}, nil, false
	}
	b, err := base64.StdEncoding.DecodeString(*sv)
	if err != nil {
		return heal.Slots{}, nil, false
	}
	var s heal.Slots
	if s.UnmarshalBinary(b) != nil {
		return heal.Slots{}, nil, false
	}
	rows, err := strconv.ParseInt(*rv, 10, 64)
	if err != nil || rows != numRows || int64(s.Count()) != rows {
		return heal.Slots{}, nil, false
	}
	sw, pw := s.Window(), p.Window()
	if s.Grain() != ds.Grain || sw.Start.Before(pw.Start) || sw.End.After(pw.End) || !sw.Start.Equal(ds.Slot(sw.Start)) {
		return heal.Slots{}, nil, false
	}
	first, last := firstLast(s)
	if fmt.Sprintf("%08x", indexCRC(b, rows, first, last)) != *cv {
		return heal.Slots{}, nil, false
	}
	return s, b, true
}
