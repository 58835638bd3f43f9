package sink_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// TestArrowModularEncryption records what heal's encryption relies on in
// arrow/go v17's Parquet modular encryption, written and read through
// pqarrow: a column encrypted with its own key and a plaintext, signed
// footer; the clear columns and the footer's key-value metadata read with
// no key at all; the encrypted column refused without a key (an error, not
// a panic, when no decryption is configured); with the key, column by
// column, the values back; a wrong key failing the footer's signature
// check when the file is opened; and no value in clear in the bytes.
// Finding: sound, given the two precautions of sink.Encryption (keys
// resolved before opening, since retrievers cannot fail; encrypted files
// read column by column in the caller's goroutine, since a page failing
// authentication panics and pqarrow's ReadTable decodes in goroutines it
// does not recover).
func TestArrowModularEncryption(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx := context.Background()
	data := encryptedFile(t, mem, "0123456789abcdef0123456789abcdef")
	if bytes.Contains(data, []byte("PLANTED")) {
		t.Fatal("the encrypted column's value is in clear in the file")
	}

	// No key: the footer, its metadata and the clear columns read.
	pf, err := file.NewParquetReader(bytes.NewReader(data), file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		t.Fatalf("opening without a key: %v", err)
	}
	md := pf.MetaData()
	if !md.IsSetEncryptionAlgorithm() || string(md.GetFooterSigningKeyMetadata()) != "kid" || md.KeyValueMetadata().FindValue("heal.probe") == nil {
		t.Fatalf("plaintext footer: encryption algorithm set %v, key metadata %q, key-value metadata %v",
			md.IsSetEncryptionAlgorithm(), md.GetFooterSigningKeyMetadata(), md.KeyValueMetadata().FindValue("heal.probe"))
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadRowGroups(ctx, []int{0, 1}, []int{0})
	if err != nil {
		t.Fatalf("reading the clear columns without a key: %v", err)
	}
	if tbl.NumRows() != 100 {
		t.Errorf("read %d rows of the clear columns, want 100", tbl.NumRows())
	}
	tbl.Release()
	if _, err := fr.ReadRowGroups(ctx, []int{2}, []int{0}); err == nil || !strings.Contains(err.Error(), "decrypt") {
		t.Errorf("reading the encrypted column without a key: %v; want an error", err)
	}
	pf.Close()

	open := func(key string) (*file.Reader, error) {
		props := parquet.NewReaderProperties(mem)
		props.FileDecryptProps = parquet.NewFileDecryptionProperties(parquet.WithFooterKey(key),
			parquet.WithColumnKeys(parquet.ColumnPathToDecryptionPropsMap{"secret": parquet.NewColumnDecryptionProperties("secret", parquet.WithDecryptKey(key))}),
			parquet.WithPlaintextAllowed())
		return file.NewParquetReader(bytes.NewReader(data), file.WithReadProps(props))
	}
	if _, err := open("fedcba9876543210fedcba9876543210"); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("opening with a wrong key: %v; want the footer signature to fail", err)
	}
	pf, err = open("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatalf("opening with the key: %v", err)
	}
	defer pf.Close()
	fr, err = pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := fr.GetColumn(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Release()
	ch, err := cr.NextBatch(pf.NumRows())
	if err != nil {
		t.Fatalf("reading the encrypted column with the key: %v", err)
	}
	defer ch.Release()
	if ch.Len() != 100 || ch.Chunk(0).(*array.String).Value(42) != "PLANTED-42" {
		t.Errorf("decrypted column: %d values, value 42 %q", ch.Len(), ch.Chunk(0).(*array.String).Value(42))
	}
}

// encryptedFile writes 100 rows of (k, t, secret) with secret encrypted
// by key, key metadata "kid", and a plaintext footer.
func encryptedFile(t *testing.T, mem memory.Allocator, key string) []byte {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "k", Type: arrow.BinaryTypes.String},
		{Name: "t", Type: arrow.FixedWidthTypes.Timestamp_ms},
		{Name: "secret", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	for i := 0; i < 100; i++ {
		b.Field(0).(*array.StringBuilder).Append("AAPL")
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(i * 60000))
		b.Field(2).(*array.StringBuilder).Append("PLANTED-" + string(rune('0'+i/10)) + string(rune('0'+i%10)))
	}
	rec := b.NewRecord()
	defer rec.Release()
	cols := parquet.ColumnPathToEncryptionPropsMap{"secret": parquet.NewColumnEncryptionProperties("secret", parquet.WithKey(key), parquet.WithKeyMetadata("kid"))}
	fe := parquet.NewFileEncryptionProperties(key, parquet.WithPlaintextFooter(), parquet.WithFooterKeyMetadata("kid"), parquet.WithEncryptedColumns(cols))
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(sc, &buf,
		parquet.NewWriterProperties(parquet.WithAllocator(mem), parquet.WithCompression(compress.Codecs.Snappy), parquet.WithEncryptionProperties(fe)),
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.AppendKeyValueMetadata("heal.probe", "visible"); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// encryptedOffset returns an offset inside the first encrypted column
// chunk of a heal file whose first two columns (key, time) are in clear:
// where the time column's chunk ends, plus a little.
func encryptedOffset(t *testing.T, data []byte) int64 {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	cc, err := pf.MetaData().RowGroup(0).ColumnChunk(1)
	if err != nil {
		t.Fatal(err)
	}
	start := cc.DataPageOffset()
	if cc.HasDictionaryPage() && cc.DictionaryPageOffset() < start {
		start = cc.DictionaryPageOffset()
	}
	return start + cc.TotalCompressedSize() + 40
}
