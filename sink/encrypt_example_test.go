package sink_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/selfheal/heal"
	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/sink"
)

// Encrypt a dataset's sensitive column, read it back with the key, and
// audit it from a lake that has no key at all.
func ExampleEncryption() {
	ctx := context.Background()
	ds := &heal.Dataset{
		Name: "readings",
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "meter", Type: arrow.BinaryTypes.String},
			{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
			{Name: "kwh", Type: arrow.PrimitiveTypes.Float64},
		}, nil),
		Key: "meter", Time: "at", Grain: time.Minute, Partition: heal.PeriodDay,
	}
	// In production: crypt.NewKMS(kms.NewFromConfig(cfg), "alias/heal"), or
	// crypt.LocalFromEnv("HEAL_KEK").
	kek := make([]byte, crypt.DataKeySize)
	rand.Read(kek)
	keys, err := crypt.NewLocal(kek)
	if err != nil {
		log.Fatal(err)
	}
	store := sink.NewMemStore()
	lake := sink.NewLake(store, &sink.Options{Encryption: &sink.Encryption{
		Keys:    keys,
		Columns: map[string][]string{"readings": sink.SensitiveColumns(ds)}, // kwh
	}})

	b := array.NewRecordBuilder(memory.DefaultAllocator, ds.Schema)
	t0 := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	for i, v := range []float64{1.5, 1.7, 1.6} {
		b.Field(0).(*array.StringBuilder).Append("m1")
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.Add(time.Duration(i) * time.Minute).UnixMilli()))
		b.Field(2).(*array.Float64Builder).Append(v)
	}
	rec := b.NewRecord()
	b.Release()
	err = lake.Write(ctx, ds, rec)
	rec.Release()
	if err != nil {
		log.Fatal(err)
	}

	// With the key: the values.
	rr, err := lake.Scan(ctx, ds, heal.Query{})
	if err != nil {
		log.Fatal(err)
	}
	for rr.Next() {
		fmt.Println("kwh:", rr.Record().Column(2))
	}
	rr.Release()

	// Without it: the audit, not the values.
	auditor := sink.NewLake(store, nil)
	err = auditor.Inventory(ctx, ds, heal.Query{}, func(pi heal.PartitionInfo) error {
		fmt.Println("audit:", pi.Partition.Key, pi.Present.Count(), "minutes present")
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	rr, err = auditor.Scan(ctx, ds, heal.Query{})
	if err != nil {
		log.Fatal(err)
	}
	rr.Next()
	var ke *sink.KeyError
	fmt.Println("scan without the key:", errors.As(rr.Err(), &ke), errors.Is(rr.Err(), crypt.ErrKeyUnavailable))
	rr.Release()
	// Output:
	// kwh: [1.5 1.7 1.6]
	// audit: m1 3 minutes present
	// scan without the key: true true
}
