package sink

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/selfheal/heal"
)

// The lake's layout, Hive-style:
//
//	<dataset>/<key column>=<escaped key>/<period name>=<period value>/<seq>.parquet
//	quotes/symbol=BINANCE%3ABTCUSDT/date=2024-01-02/01717000000000000000-1a2b3c4d.parquet
//
// seq is the write's sequence number: the wall clock in unix nanoseconds,
// zero-padded to 20 digits, made strictly increasing within the process,
// then 8 random hex digits so two processes never pick the same name. A
// compacted file is named <seq>.c<8 hex>.parquet, where seq is the greatest
// seq among its inputs. Files are ranked by seq; the greatest wins.

const (
	metaPrefix       = "_heal/"
	quarantinePrefix = "_quarantine/"
	fileExt          = ".parquet"
	seqLen           = 20 + 1 + 8 // digits, '-', random hex
	onceMark         = ".w"       // precedes the rest of the key's hash in an idempotent Write's file name
)

// EscapeKey renders key as one path element: every byte outside
// [A-Za-z0-9._-] becomes %XX (upper-case hex). "BINANCE:BTCUSDT" becomes
// "BINANCE%3ABTCUSDT" and "../../etc" becomes "..%2F..%2Fetc", so a key can
// never address anything outside its dataset's directory (heal.ValidKey
// already refuses "." and "..").
func EscapeKey(key string) string {
	n := 0
	for i := 0; i < len(key); i++ {
		if !plainByte(key[i]) {
			n++
		}
	}
	if n == 0 {
		return key
	}
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key) + 2*n)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

// UnescapeKey reverses [EscapeKey]. It accepts only the canonical form
// EscapeKey produces, so that one key has exactly one directory.
func UnescapeKey(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case plainByte(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && upperHex(s[i+1]) && upperHex(s[i+2]):
			v, _ := hex.DecodeString(s[i+1 : i+3])
			if plainByte(v[0]) {
				return "", fmt.Errorf("heal/sink: key %q: %%%s need not be escaped", s, s[i+1:i+3])
			}
			b.WriteByte(v[0])
			i += 2
		default:
			return "", fmt.Errorf("heal/sink: key %q: not escaped canonically at byte %d", s, i)
		}
	}
	return b.String(), nil
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func upperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// keyDir is "<dataset>/<keycol>=<escaped key>/".
func keyDir(ds *heal.Dataset, key string) string {
	return ds.Name + "/" + ds.Key + "=" + EscapeKey(key) + "/"
}

// partitionDir is "<dataset>/<keycol>=<escaped key>/<period>=<value>/".
func partitionDir(ds *heal.Dataset, p heal.Partition) string {
	return keyDir(ds, p.Key) + p.Period.Name() + "=" + p.Period.Format(p.Start) + "/"
}

// PartitionPath returns the directory, with a trailing slash, that holds the
// files of p in a lake (e.g. "quotes/symbol=AAPL/date=2024-01-02/").
func PartitionPath(ds *heal.Dataset, p heal.Partition) string { return partitionDir(ds, p) }

// fileRef is one listed data file of a partition.
type fileRef struct {
	name string // full store name
	seq  string // "" for a foreign file (not named by heal)
	size int64
}

// parseDataName splits a listed name of ds into its partition and file. ok
// is false for names that are not data files of ds (ledger, quarantine,
// hidden files, other layouts); why says what was wrong when the name looked
// like a data file but was malformed.
func parseDataName(ds *heal.Dataset, name string) (p heal.Partition, file string, ok bool, why string) {
	rest, found := strings.CutPrefix(name, ds.Name+"/")
	if !found {
		return p, "", false, ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return p, "", false, ""
	}
	for _, e := range parts {
		if e == "" || e[0] == '_' || e[0] == '.' {
			return p, "", false, ""
		}
	}
	if !strings.HasSuffix(parts[2], fileExt) {
		return p, "", false, ""
	}
	if err := validName(name); err != nil {
		// A foreign object no Store can open (NUL or backslash, possible
		// on S3): taken for data, it made its partition unreadable.
		return p, "", false, err.Error()
	}
	esc, found := strings.CutPrefix(parts[0], ds.Key+"=")
	if !found {
		return p, "", false, "unexpected key directory " + parts[0]
	}
	key, err := UnescapeKey(esc)
	if err != nil {
		return p, "", false, err.Error()
	}
	if err := heal.ValidKey(key); err != nil {
		return p, "", false, err.Error()
	}
	val, found := strings.CutPrefix(parts[1], ds.Partition.Name()+"=")
	if !found {
		return p, "", false, "unexpected period directory " + parts[1]
	}
	start, err := ds.Partition.Parse(val)
	if err != nil {
		return p, "", false, err.Error()
	}
	if ds.Partition.Format(start) != val {
		return p, "", false, "non-canonical period " + val
	}
	return heal.Partition{Dataset: ds.Name, Key: key, Start: start, Period: ds.Partition}, parts[2], true, ""
}

// seqOf returns the seq a file name carries, or "" for a foreign name.
func seqOf(file string) string {
	if len(file) < seqLen+len(fileExt) {
		return ""
	}
	s := file[:seqLen]
	for i := 0; i < 20; i++ {
		if s[i] < '0' || s[i] > '9' {
			return ""
		}
	}
	if s[20] != '-' {
		return ""
	}
	for i := 21; i < seqLen; i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return ""
		}
	}
	if r := file[seqLen:]; r != fileExt && !strings.HasPrefix(r, ".c") && !strings.HasPrefix(r, onceMark) {
		return ""
	}
	return s
}

// precedes reports whether a ranks below b: b's rows win over a's. Foreign
// files rank below heal's, among themselves by name.
func precedes(a, b fileRef) bool {
	if a.seq != b.seq {
		return a.seq < b.seq // "" (foreign) sorts first
	}
	return a.name < b.name
}

var seqState struct {
	sync.Mutex
	last int64
}

// nextSeq returns a new sequence number, strictly greater than every one
// this process returned before (if the clock did not advance, last+1).
func nextSeq() string {
	now := time.Now().UnixNano()
	seqState.Lock()
	if now <= seqState.last {
		now = seqState.last + 1
	}
	seqState.last = now
	seqState.Unlock()
	return fmt.Sprintf("%020d-%s", now, randHex())
}

// zeroSeq is the seq a compaction of only foreign files carries: above any
// foreign file, below every write.
const zeroSeq = "00000000000000000000-00000000"

func randHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// validName reports whether name is a store name: relative, slash-separated,
// without empty, "." or ".." elements or elements starting with '.', and
// without NUL or backslash.
func validName(name string) error {
	if name == "" {
		return fmt.Errorf("heal/sink: empty name")
	}
	if strings.ContainsAny(name, "\x00\\") {
		return fmt.Errorf("heal/sink: name %q: holds NUL or backslash", name)
	}
	for e := range strings.SplitSeq(name, "/") {
		if e == "" || e[0] == '.' {
			return fmt.Errorf("heal/sink: name %q: empty, absolute or dot element", name)
		}
	}
	return nil
}
