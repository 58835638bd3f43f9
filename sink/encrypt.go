package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/metadata"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/crypt"
	"golang.org/x/sync/errgroup"
)

// Encryption configures client-side envelope encryption at rest
// ([Options].Encryption). Each data file a Write or Compact stores for a
// dataset named in Columns gets a fresh data key
// ([crypt.KeyProvider.GenerateDataKey]); its sensitive columns are
// encrypted with it by Parquet modular encryption (AES-GCM), and the data
// key is kept only wrapped by the provider's key-encryption key (KEK).
//
// # What stays readable
//
// The key and time columns, the footer (schema, row counts, heal's
// presence index) and the lake index stay in clear, so an audit
// ([Lake.Inventory], heal's Engine.Audit, the heal command) never needs a
// key: a lake opened with no provider, or with one refused kms:Decrypt,
// audits an encrypted lake in full. Reading a sensitive column (Scan,
// Compact) needs the key, and fails otherwise with a [*KeyError] naming
// the file; such files are never quarantined. The statistics of encrypted
// columns are left out of the clear footer, as the Parquet format
// specifies, so no value leaks through them. Parquet readers with the key
// (parquet-mr, Arrow C++) can read the files given the data key; those
// without can read the clear columns, as heal does.
//
// # Where the wrapped keys live
//
// Not in the file: each data key is wrapped and stored beside the data, as
// a small record _heal/keys/<dataset>/<id> (JSON: the KEK's id and the
// wrapped key), written create-only before its data file, so a file never
// exists without its key. The file names <id> in its Parquet key metadata.
// This is what lets [Lake.Rewrap] rotate the KEK by rewriting those
// records alone: a key kept in the file's footer could only be re-wrapped
// by rewriting the whole file, since the footer is not separately
// replaceable. A record costs one more PUT per file written and one GET,
// plus one provider Decrypt (a KMS request), per encrypted file read.
//
// # Arrow's modular encryption: sound, with two precautions
//
// arrow/go v17's Parquet modular encryption was checked before use (see
// TestArrowModularEncryption): AES-GCM per page with module AADs, per-column
// keys, a signed plaintext footer, and readers without keys reading the
// clear columns all work, and a wrong key fails the footer signature. Two
// things in it are not safe as is, and heal works around both: its key
// retriever cannot return an error (a missing key panics), and a page that
// fails authentication panics inside the goroutines pqarrow's ReadTable
// starts, which no caller can recover, so one damaged encrypted page would
// crash the process. heal therefore fetches the data key before opening a
// file for decryption (errors are errors), and reads an encrypted file
// column by column in the caller's goroutine, where a panic is recovered
// and the file quarantined like any damaged file.
//
// Files written before encryption was enabled, and datasets not in
// Columns, are read and written in clear as before; compacting a partition
// rewrites its files encrypted.
//
// # Compaction keeps what its inputs encrypted
//
// [Lake.Compact] encrypts the merged file's columns named in Columns and
// every column any of its inputs held encrypted, whatever Columns says: a
// lake given Keys but no Columns (the heal command, or a process
// configured otherwise) compacts an encrypted partition without writing a
// sensitive value in clear. Rewriting needs the inputs' plaintext, so a
// lake without the key (no Keys, another KEK, Decrypt refused) fails the
// compaction of such a partition with a [*KeyError] naming the file,
// before writing or deleting anything.
//
// # The lake remembers what was encrypted
//
// A lake whose Columns names a dataset records those columns in the lake,
// as an encryption policy (_heal/keys/_columns/<dataset>/), after its
// first write of it. From then on every process writing the dataset
// encrypts them as well as its own Columns, and one without a key
// provider cannot write the dataset: its Write fails with a permanent
// error naming the columns, and stores nothing. So a second process
// configured differently, or not at all, never puts a sensitive value in
// clear beside encrypted files. A process reads the policy again after a
// minute at most. Policies only add columns; to stop encrypting one,
// delete its policy object by hand.
//
// Arrow's encryption API takes keys as Go
// strings, which cannot be wiped; heal wipes its own copies.
type Encryption struct {
	// Keys wraps and unwraps data keys. nil: the lake cannot write the
	// datasets of Columns, nor read their encrypted columns; audits work.
	// Every encrypted file read unwraps its data key: wrap a KMS provider
	// in [crypt.Cache] so repeated reads do not each cost a KMS request.
	Keys crypt.KeyProvider
	// Columns names, per dataset name, the columns to encrypt
	// ([SensitiveColumns] names all but the key and time). The dataset's key
	// and time columns cannot be named: they stay readable so that audits
	// never need a key. A dataset absent, or with no columns, is written in
	// clear.
	Columns map[string][]string
}

// SensitiveColumns returns every column of ds but its key and time: the
// widest [Encryption].Columns entry allowed.
func SensitiveColumns(ds *heal.Dataset) []string {
	var out []string
	for _, f := range ds.Schema.Fields() {
		if f.Name != ds.Key && f.Name != ds.Time {
			out = append(out, f.Name)
		}
	}
	return out
}

// KeyError reports an encrypted data file whose data key is unavailable:
// the lake has no key provider, the provider refused (no decrypt rights,
// another KEK: errors.Is(err, crypt.ErrKeyUnavailable)) or failed, or the
// file's key record is missing. Files are never quarantined for it.
type KeyError struct {
	File string // the data file
	Err  error
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("heal/sink: read %s: the data key of this encrypted file is unavailable: %v", e.File, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

const (
	// keysPrefix holds the wrapped data keys: _heal/keys/<dataset>/<id>.
	keysPrefix = metaPrefix + "keys/"
	// keyRefPrefix starts the Parquet key metadata of heal's encrypted
	// files; the record's id follows.
	keyRefPrefix = "heal.dk1:"
)

// keyRecord is the stored form of a wrapped data key.
type keyRecord struct {
	V       int    `json:"v"`
	KEK     string `json:"kek"`     // the KEK's id, as the provider returned it
	Wrapped []byte `json:"wrapped"` // base64 in JSON
}

func keyRecordName(ds *heal.Dataset, id string) string { return keysPrefix + ds.Name + "/" + id }

// validKeyID reports whether id is a record id heal makes: 32 hex digits.
func validKeyID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// encryptedColumns returns the columns of ds to encrypt, checked, or nil:
// those Columns names and those of also (the columns the lake's
// encryption policy declares, and those encrypted in the files a
// compaction rewrites), in that order. A column of also that ds's schema
// lacks (a policy of another minor) is ignored.
func (l *Lake) encryptedColumns(ds *heal.Dataset, also []string) ([]string, error) {
	cols := slices.Clone(l.configuredColumns(ds))
	for _, c := range also {
		if !slices.Contains(cols, c) && len(ds.Schema.FieldIndices(c)) > 0 {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return nil, nil
	}
	for _, c := range cols {
		switch {
		case c == ds.Key || c == ds.Time:
			return nil, heal.Permanent(fmt.Errorf("heal/sink: encryption of %s: column %q is the dataset's key or time, which stay readable so that audits need no key", ds.Name, c))
		case len(ds.Schema.FieldIndices(c)) == 0:
			return nil, heal.Permanent(fmt.Errorf("heal/sink: encryption of %s: no column %q in the dataset", ds.Name, c))
		}
	}
	if l.enc == nil || l.enc.Keys == nil {
		return nil, heal.Permanent(fmt.Errorf("heal/sink: encryption of %s: columns %s are kept encrypted in this lake (by Encryption.Columns, the lake's encryption policy under %s%s/, or the files rewritten), and there is no key provider (Encryption.Keys) to encrypt them: nothing was written",
			ds.Name, strings.Join(cols, ", "), policyPrefix, ds.Name))
	}
	return cols, nil
}

// encryptedFileColumns returns the sorted top-level columns of which the
// file pf reads holds encrypted chunks. pf must have been given the file's
// key: without it, an encrypted chunk's metadata does not decode, which is
// an error here (never "in clear").
func encryptedFileColumns(pf *file.Reader) ([]string, error) {
	md := pf.MetaData()
	var cols []string
	for i := 0; i < pf.NumRowGroups(); i++ {
		rg := md.RowGroup(i)
		for j := 0; j < rg.NumColumns(); j++ {
			cc, err := rg.ColumnChunk(j)
			if err != nil {
				return nil, fmt.Errorf("column chunk %d of row group %d: %w", j, i, err)
			}
			if cc.CryptoMetadata() == nil {
				continue
			}
			if c := md.Schema.Column(j).ColumnPath()[0]; !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	slices.Sort(cols)
	return cols, nil
}

// encryptionProps returns the writer property that encrypts a new file of
// ds with schema sc, or nil when the file is written in clear: its
// encrypted columns are those Columns names for ds and also. A compaction
// passes as also the columns encrypted in its inputs, so that a lake whose
// Encryption.Columns does not name the dataset never rewrites them in
// clear. It makes the file's data key and stores its wrapped form first.
func (l *Lake) encryptionProps(ctx context.Context, ds *heal.Dataset, sc *arrow.Schema, also []string) (parquet.WriterProperty, error) {
	cols, err := l.encryptedColumns(ds, also)
	if err != nil || cols == nil {
		return nil, err
	}
	// The leaf columns of the sensitive fields (a nested field has several).
	ps, err := pqarrow.ToParquet(sc, l.writerProps(), l.arrowProps())
	if err != nil {
		return nil, fmt.Errorf("parquet schema: %w", err)
	}
	var paths []string
	for i := 0; i < ps.NumColumns(); i++ {
		if path := ps.Column(i).ColumnPath(); slices.Contains(cols, path[0]) {
			paths = append(paths, path.String())
		}
	}
	dk, err := l.enc.Keys.GenerateDataKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	defer dk.Wipe()
	if len(dk.Plaintext) != crypt.DataKeySize {
		return nil, fmt.Errorf("data key: the provider returned %d bytes, want %d", len(dk.Plaintext), crypt.DataKeySize)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	id := hex.EncodeToString(b[:])
	rec, err := json.Marshal(keyRecord{V: 1, KEK: dk.KeyID, Wrapped: dk.Wrapped})
	if err != nil {
		return nil, err
	}
	// Before the file: a file never exists without its key. A crash
	// between the two leaves an unused record, which costs nothing else.
	if err := l.store.Put(ctx, keyRecordName(ds, id), rec, true); err != nil {
		return nil, fmt.Errorf("store data key: %w", err)
	}
	ref := keyRefPrefix + id
	key := string(dk.Plaintext)
	m := make(parquet.ColumnPathToEncryptionPropsMap, len(paths))
	for _, p := range paths {
		m[p] = parquet.NewColumnEncryptionProperties(p, parquet.WithKey(key), parquet.WithKeyMetadata(ref))
	}
	// The footer stays in clear (signed with the data key) so that the
	// key and time columns and the presence index read without a key.
	return parquet.WithEncryptionProperties(parquet.NewFileEncryptionProperties(key,
		parquet.WithPlaintextFooter(), parquet.WithFooterKeyMetadata(ref), parquet.WithEncryptedColumns(m))), nil
}

// fileKey returns the plaintext data key of the encrypted file name, whose
// footer is md. Every error is a *KeyError.
func (l *Lake) fileKey(ctx context.Context, ds *heal.Dataset, name string, md *metadata.FileMetaData) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		if errors.Is(err, crypt.ErrKeyUnavailable) && !heal.IsPermanent(err) {
			err = heal.Permanent(err) // retrying cannot help
		}
		return nil, &KeyError{File: name, Err: err}
	}
	id, ok := strings.CutPrefix(string(md.GetFooterSigningKeyMetadata()), keyRefPrefix)
	if !ok || !validKeyID(id) {
		return fail(fmt.Errorf("the file was not encrypted by heal (its key metadata names no heal key record): %w", crypt.ErrKeyUnavailable))
	}
	if l.enc == nil || l.enc.Keys == nil {
		return fail(fmt.Errorf("the lake was opened without a key provider: %w", crypt.ErrKeyUnavailable))
	}
	rn := keyRecordName(ds, id)
	obj, err := l.store.Open(ctx, rn)
	if err != nil {
		if errors.Is(err, heal.ErrNotFound) {
			return fail(fmt.Errorf("its key record %s is missing: %w (%w)", rn, crypt.ErrKeyUnavailable, err))
		}
		return fail(fmt.Errorf("key record %s: %w", rn, err))
	}
	data, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	obj.Close()
	if err != nil {
		return fail(fmt.Errorf("key record %s: %w", rn, err))
	}
	var rec keyRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.V != 1 || len(rec.Wrapped) == 0 {
		return fail(fmt.Errorf("key record %s is malformed: %w", rn, crypt.ErrKeyUnavailable))
	}
	key, err := l.enc.Keys.Decrypt(ctx, rec.Wrapped, rec.KEK)
	if err != nil {
		return fail(err)
	}
	if len(key) != crypt.DataKeySize {
		crypt.Wipe(key)
		return fail(fmt.Errorf("the provider unwrapped %d bytes, want %d: %w", len(key), crypt.DataKeySize, crypt.ErrKeyUnavailable))
	}
	return key, nil
}

// fixedKey is a key retriever answering the one key of a file: heal
// fetches it before opening the file, since arrow's retrievers cannot
// return errors.
type fixedKey string

func (k fixedKey) GetKey([]byte) string { return string(k) }

// readerAtSeeker hides the Close of an object shared with another reader.
type readerAtSeeker struct{ parquet.ReaderAtSeeker }

// readTable reads every column of f: with pqarrow's ReadTable for a file
// in clear; for an encrypted one, after fetching its data key, column by
// column in this goroutine (see Encryption: a damaged page panics, and
// the caller's recover must see it). It also returns the columns f holds
// encrypted (sorted; nil for a file in clear), which a rewrite of f must
// keep encrypted. Errors are returned as they come, for the caller to
// classify; a *KeyError is never corruption.
func (l *Lake) readTable(ctx context.Context, ds *heal.Dataset, f *openFile) (arrow.Table, []string, error) {
	md := f.pf.MetaData()
	if !md.IsSetEncryptionAlgorithm() {
		tbl, err := f.fr.ReadTable(ctx)
		return tbl, nil, err
	}
	key, err := l.fileKey(ctx, ds, f.name, md)
	if err != nil {
		return nil, nil, err
	}
	defer crypt.Wipe(key)
	props := parquet.NewReaderProperties(l.mem)
	props.FileDecryptProps = parquet.NewFileDecryptionProperties(parquet.WithFooterKey(string(key)),
		parquet.WithKeyRetriever(fixedKey(key)), parquet.WithPlaintextAllowed())
	// A second reader over the same object: the first, without keys, is
	// the one that closes it.
	pf, err := file.NewParquetReader(readerAtSeeker{f.obj}, file.WithReadProps(props))
	if err != nil {
		return nil, nil, err // a wrong key fails the footer's signature here
	}
	enc, err := encryptedFileColumns(pf)
	if err != nil {
		return nil, nil, err
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, l.mem)
	if err != nil {
		return nil, nil, err
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, nil, err
	}
	n := pf.NumRows()
	cols := make([]arrow.Column, 0, sc.NumFields())
	defer func() {
		for i := range cols {
			cols[i].Release()
		}
	}()
	for i, fld := range sc.Fields() {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		cr, err := fr.GetColumn(ctx, i)
		if err != nil {
			return nil, nil, fmt.Errorf("column %s: %w", fld.Name, err)
		}
		ch, err := cr.NextBatch(n)
		cr.Release()
		if err != nil {
			return nil, nil, fmt.Errorf("column %s: %w", fld.Name, err)
		}
		cols = append(cols, *arrow.NewColumn(fld, ch))
		ch.Release()
	}
	return array.NewTable(sc, cols, n), enc, nil
}

// Rewrap rotates the key-encryption key of ds's encrypted files: it
// re-wraps the data key of every key record of ds from the KEK of from to
// the KEK of to, rewriting the records (each atomically) and no data file,
// and returns how many it re-wrapped. Records already wrapped by to's KEK
// are skipped, so an interrupted Rewrap is finished by running it again.
//
// Afterwards from's KEK is no longer needed to read ds, provided every
// writer used to's by then: switch writers to the new provider first, then
// Rewrap (a record a writer still wrapping with the old KEK stores during
// the Rewrap is not re-wrapped; run it again). Until it ends, give readers
// crypt.Multi(new, old), which unwraps records of either KEK.
func (l *Lake) Rewrap(ctx context.Context, ds *heal.Dataset, from, to crypt.KeyProvider) (int, error) {
	if err := ds.Validate(); err != nil {
		return 0, err
	}
	if from == nil || to == nil {
		return 0, errors.New("heal/sink: rewrap: a nil key provider")
	}
	// to's KEK id, learned by wrapping a throwaway key.
	probe := make([]byte, crypt.DataKeySize)
	_, _ = rand.Read(probe)
	_, toID, err := to.Encrypt(ctx, probe)
	crypt.Wipe(probe)
	if err != nil {
		return 0, fmt.Errorf("heal/sink: rewrap %s: %w", ds.Name, err)
	}
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.conc)
	prefix := keysPrefix + ds.Name + "/"
	err = l.store.List(gctx, prefix, func(oi ObjectInfo) error {
		if id := strings.TrimPrefix(oi.Name, prefix); !validKeyID(id) {
			return nil
		}
		g.Go(func() error {
			done, err := l.rewrapRecord(gctx, oi.Name, from, to, toID)
			if err != nil {
				return fmt.Errorf("heal/sink: rewrap %s: %w", oi.Name, err)
			}
			if done {
				n.Add(1)
			}
			return nil
		})
		return gctx.Err()
	})
	if werr := g.Wait(); werr != nil {
		return int(n.Load()), werr
	}
	if err != nil {
		return int(n.Load()), fmt.Errorf("heal/sink: rewrap %s: %w", ds.Name, err)
	}
	return int(n.Load()), nil
}

func (l *Lake) rewrapRecord(ctx context.Context, name string, from, to crypt.KeyProvider, toID string) (bool, error) {
	sw, _ := l.store.(Swapper)
	// A record changed under us (a concurrent Rewrap) is read again: at
	// most a few times, as each change is a finished re-wrap.
	for attempt := 0; ; attempt++ {
		var data []byte
		var version string
		var err error
		if sw != nil {
			data, version, err = sw.ReadVersion(ctx, name)
		} else {
			data, err = l.readObject(ctx, name)
		}
		if err != nil {
			return false, err
		}
		var rec keyRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.V != 1 {
			return false, errors.New("malformed key record")
		}
		if rec.KEK == toID {
			return false, nil
		}
		key, err := from.Decrypt(ctx, rec.Wrapped, rec.KEK)
		if err != nil {
			return false, err
		}
		wrapped, id, err := to.Encrypt(ctx, key)
		crypt.Wipe(key)
		if err != nil {
			return false, err
		}
		out, err := json.Marshal(keyRecord{V: 1, KEK: id, Wrapped: wrapped})
		if err != nil {
			return false, err
		}
		if sw == nil {
			// An atomic overwrite: a concurrent reader sees the old record
			// or the new, and both unwrap to the same key.
			return true, l.store.Put(ctx, name, out, false)
		}
		// Replace only the record we read (S3: If-Match on its ETag), so
		// two rotations racing on one record cannot both count it, and the
		// loser re-reads what the winner wrote.
		err = sw.Swap(ctx, name, out, version)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, ErrChanged) || attempt >= 3 {
			return false, err
		}
	}
}
