package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/selfheal/heal"
	"github.com/selfheal/heal/audit"
	"github.com/selfheal/heal/cost"
	"github.com/selfheal/heal/crypt"
	"github.com/selfheal/heal/evolve"
	"github.com/selfheal/heal/report"
	"github.com/selfheal/heal/sink"
)

// Exit codes.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitIncomplete = 3
)

const usageText = `heal reports on, audits and compacts a heal lake.

Usage:
  heal <command> -lake LAKE [flags]

Commands:
  status    completeness per key and period (before and after repair), open
            gaps, unrepairable slots, alarms and costs
  audit     audit the lake now, read-only: what the rule expects that is missing
  report    write the health report, one self-contained HTML page (-o)
  compact   rewrite each partition stored in several files, or holding
            duplicates, into one file
  serve     serve the latest row of every key, its freshness and the
            completeness over HTTP (GET /v1/health, /v1/datasets/{name}/latest)
  help      this text; "heal help COMMAND" lists the command's flags

LAKE is a directory or s3://bucket/prefix (default: $HEAL_LAKE).

Encrypted lakes: status, audit and report need no key. compact and serve
read the encrypted columns, and take the lake's key-encryption key:
  -local-key FILE   a local key: 32 bytes as 64 hex digits or base64
  -kms-key KEY_ID   an AWS KMS key (id, ARN or alias/NAME), through the
                    standard AWS configuration (AWS_ENDPOINT_URL_KMS, ...)
compact keeps encrypted every column its input files hold encrypted.

Exit codes: 0 ok; 1 error; 2 usage error; 3 a key is less complete than
-min-completeness (status and audit).
`

// usageError is an error in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// incompleteError reports keys below -min-completeness: exit code 3.
type incompleteError struct{ msg string }

func (e *incompleteError) Error() string { return e.msg }

// config is what the flags say.
type config struct {
	cmd         string
	lake        string
	datasets    []string
	rule        string
	from, to    time.Time
	since       time.Duration
	per         time.Duration
	costPer     time.Duration
	tz          *time.Location
	minComplete float64
	prices      cost.Prices
	out         string
	jsonOut     bool
	verbose     bool
	maxGaps     int
	serve       serveConfig
	localKey    string // -local-key: a file holding a local KEK
	kmsKey      string // -kms-key: a KMS key id, ARN or alias
}

// hasKey reports whether a key flag was given.
func (c *config) hasKey() bool { return c.localKey != "" || c.kmsKey != "" }

// run is the command: it parses args, does the work, writes to stdout and
// stderr, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "heal:", err)
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, `Run "heal help" for usage.`)
		}
		return exitUsage
	}
	log := slog.New(slog.DiscardHandler)
	if cfg.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	err = execute(ctx, cfg, stdout, log)
	var ie *incompleteError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ie):
		fmt.Fprintln(stderr, "heal:", err)
		return exitIncomplete
	}
	var ue *usageError
	fmt.Fprintln(stderr, "heal:", err)
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func parseArgs(args []string, stderr io.Writer) (*config, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return nil, usagef("no command")
	}
	cmd := args[0]
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && slices.Contains([]string{"status", "audit", "report", "compact", "serve"}, args[1]) {
			fs, _ := newFlagSet(args[1], stderr)
			fs.Usage()
			return nil, flag.ErrHelp
		}
		fmt.Fprint(stderr, usageText)
		return nil, flag.ErrHelp
	case "status", "audit", "report", "compact", "serve":
	default:
		return nil, usagef("unknown command %q: want status, audit, report, compact or serve", cmd)
	}
	fs, cfg := newFlagSet(cmd, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%s", err.Error())
	}
	if fs.NArg() > 0 {
		return nil, usagef("%s: unexpected argument %q (flags come after the command)", cmd, fs.Arg(0))
	}
	if cfg.lake == "" {
		cfg.lake = os.Getenv("HEAL_LAKE")
	}
	if cfg.lake == "" {
		return nil, usagef("%s: -lake is required (a directory or s3://bucket/prefix), or set HEAL_LAKE", cmd)
	}
	if cfg.since < 0 || cfg.per < 0 || cfg.costPer < 0 {
		return nil, usagef("%s: -since, -per and -cost-per must not be negative", cmd)
	}
	if cfg.since > 0 && !cfg.from.IsZero() {
		return nil, usagef("%s: -since and -from exclude each other", cmd)
	}
	if !cfg.from.IsZero() && !cfg.to.IsZero() && !cfg.to.After(cfg.from) {
		return nil, usagef("%s: -to must be after -from", cmd)
	}
	if cfg.localKey != "" && cfg.kmsKey != "" {
		return nil, usagef("%s: -local-key and -kms-key exclude each other: the lake's data keys are wrapped by one key-encryption key", cmd)
	}
	if cfg.minComplete < 0 || cfg.minComplete > 1 {
		return nil, usagef("%s: -min-completeness %g: want a share between 0 and 1 (0.99 for 99%%)", cmd, cfg.minComplete)
	}
	if cfg.rule != "" {
		if _, err := audit.ParseRule(cfg.rule); err != nil {
			return nil, usagef("%s: -rule: %v", cmd, err)
		}
	}
	return cfg, nil
}

// timeFlag reads RFC 3339 times or YYYY-MM-DD dates (UTC midnight).
type timeFlag struct{ t *time.Time }

func (f timeFlag) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f timeFlag) Set(s string) error {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			*f.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("want a time as 2006-01-02, 2006-01-02T15:04 (UTC) or RFC 3339")
}

type tzFlag struct{ loc **time.Location }

func (f tzFlag) String() string {
	if f.loc == nil || *f.loc == nil {
		return ""
	}
	return (*f.loc).String()
}

func (f tzFlag) Set(s string) error {
	loc, err := time.LoadLocation(s)
	if err != nil {
		return err
	}
	*f.loc = loc
	return nil
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(s string) error {
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*f.l = append(*f.l, x)
		}
	}
	return nil
}

func newFlagSet(cmd string, stderr io.Writer) (*flag.FlagSet, *config) {
	cfg := &config{cmd: cmd, prices: cost.DefaultPrices(), maxGaps: 20}
	fs := flag.NewFlagSet("heal "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.lake, "lake", "", "the lake: a directory or s3://bucket/prefix (default $HEAL_LAKE)")
	fs.Var(listFlag{&cfg.datasets}, "dataset", "datasets to look at, comma-separated or repeated (default: every dataset recorded in the lake)")
	fs.BoolVar(&cfg.verbose, "v", false, "log what heal reads to stderr")
	if cmd == "serve" {
		serveFlags(fs, cfg)
	}
	if cmd != "compact" {
		fs.StringVar(&cfg.rule, "rule", "", "completeness rule, overriding the one recorded with each dataset: "+strings.Join(audit.RuleNames(), ", "))
	}
	if cmd != "serve" { // serve's window follows the clock
		fs.Var(timeFlag{&cfg.from}, "from", "start of the window, 2006-01-02[T15:04] UTC or RFC 3339 (default: see -since)")
		fs.Var(timeFlag{&cfg.to}, "to", "end of the window (default: the end of the audits recorded, or of the data)")
		fs.DurationVar(&cfg.since, "since", 0, "window length ending at -to (default: what the recorded audits cover, at most 7 days; compact: everything)")
	}
	if cmd == "status" || cmd == "report" {
		fs.DurationVar(&cfg.per, "per", time.Hour, "length of a period of the completeness tables")
		fs.DurationVar(&cfg.costPer, "cost-per", 24*time.Hour, "length of a period of the cost table")
		fs.Var(&cfg.prices, "price", "override prices, name=dollars,...: "+strings.Join(cost.PriceNames(), ", ")+" (put/get/list/delete per 1,000 requests)")
		fs.Var(tzFlag{&cfg.tz}, "tz", "time zone to show times in (default: the rule's, else UTC)")
	}
	if cmd == "status" || cmd == "audit" {
		fs.Float64Var(&cfg.minComplete, "min-completeness", 0, "exit 3 when a key's share of expected slots held or confirmed empty is below this (0.99 for 99%; 0: never)")
		fs.BoolVar(&cfg.jsonOut, "json", false, "write JSON instead of tables")
		fs.IntVar(&cfg.maxGaps, "max-gaps", 20, "gaps listed per dataset (0: none)")
	}
	if cmd == "report" {
		fs.StringVar(&cfg.out, "o", "report.html", `file to write the report to ("-": stdout)`)
	}
	if cmd == "compact" || cmd == "serve" { // they read encrypted columns
		fs.StringVar(&cfg.localKey, "local-key", "", "file holding the lake's local key-encryption key (32 bytes as 64 hex digits or base64), for encrypted columns")
		fs.StringVar(&cfg.kmsKey, "kms-key", "", "AWS KMS key wrapping the lake's data keys (key id, ARN or alias/NAME), for encrypted columns; standard AWS configuration, AWS_ENDPOINT_URL_KMS")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: heal %s -lake LAKE [flags]\n\nFlags:\n", cmd)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit codes: 0 ok; 1 error; 2 usage error; 3 a key less complete than -min-completeness.\n")
	}
	return fs, cfg
}

// keyProvider returns the key provider the key flags name, or nil. Errors
// name the flag and never hold key material.
func keyProvider(ctx context.Context, cfg *config) (crypt.KeyProvider, error) {
	switch {
	case cfg.localKey != "":
		p, err := crypt.LocalFromFile(cfg.localKey)
		if err != nil {
			return nil, fmt.Errorf("-local-key %s: %w", cfg.localKey, err)
		}
		return p, nil
	case cfg.kmsKey != "":
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("-kms-key %s: load the AWS configuration: %w", cfg.kmsKey, err)
		}
		// Every encrypted file read unwraps its data key: the cache spares
		// a KMS request per file read again (sink.Encryption.Keys).
		return crypt.Cache(crypt.NewKMS(kms.NewFromConfig(awsCfg), cfg.kmsKey), nil), nil
	}
	return nil, nil
}

// openLake opens the lake a flag names, without creating anything. keys,
// when not nil, reads (and compaction rewrites) encrypted columns; which
// columns are encrypted comes from the files.
func openLake(ctx context.Context, where string, keys crypt.KeyProvider, log *slog.Logger) (*sink.Lake, error) {
	opts := &sink.Options{Logger: log}
	if keys != nil {
		opts.Encryption = &sink.Encryption{Keys: keys}
	}
	if strings.HasPrefix(where, "s3://") {
		st, err := openS3(ctx, where, log)
		if err != nil {
			return nil, err
		}
		return sink.NewLake(st, opts), nil
	}
	if strings.Contains(where, "://") {
		return nil, usagef("-lake %q: want a directory or s3://bucket/prefix", where)
	}
	fi, err := os.Stat(where)
	if err != nil {
		return nil, fmt.Errorf("lake %s: %w", where, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lake %s: not a directory", where)
	}
	return sink.OpenDir(where, opts)
}

// openS3 opens "s3://bucket/prefix[?region=NAME&use_path_style=true]" as
// sink.OpenS3 does (config.LoadDefaultConfig: the environment, shared
// config files or instance role; AWS_ENDPOINT_URL_S3 for an S3-compatible
// server), but without the SDK's debug note on every response of a server
// that sends no checksums, unless -v.
func openS3(ctx context.Context, raw string, log *slog.Logger) (*sink.S3Store, error) {
	bucket, prefix, err := sink.ParseS3URL(raw)
	if err != nil {
		return nil, usagef("-lake: %v", err)
	}
	u, _ := url.Parse(raw)
	var loadOpts []func(*awsconfig.LoadOptions) error
	if r := u.Query().Get("region"); r != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(r))
	}
	pathStyle := false
	if v := u.Query().Get("use_path_style"); v != "" {
		if pathStyle, err = strconv.ParseBool(v); err != nil {
			return nil, usagef("-lake: use_path_style=%q: want true or false", v)
		}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	quiet := !log.Enabled(ctx, slog.LevelDebug)
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = pathStyle
		o.DisableLogOutputChecksumValidationSkipped = quiet
	})
	return sink.NewS3Store(client, bucket, prefix, nil), nil
}

// target is one dataset to work on, with an engine that cannot fetch.
type target struct {
	desc     *heal.Descriptor
	ds       *heal.Dataset
	ruleName string
	rule     heal.CompletenessRule
	eng      *heal.Engine
	majors   []string // the schema majors audited as one with this dataset, or nil
}

// majorLake is the lake the engines of one dataset's schema majors audit
// through, counting a slot held in any major as held.
type majorLake struct {
	lake   heal.Lake
	majors []string
}

// majorLakes reads which datasets are schema majors of one another (an
// engine over evolve's lake records them in its descriptor) and returns,
// for each of them, the lake that audits them as one, as their engines
// do. A major without a descriptor cannot be read: its family is audited
// major by major, with a warning.
func majorLakes(descs []*heal.Descriptor, byName map[string]*heal.Descriptor, lake heal.Lake, log *slog.Logger) (map[string]*majorLake, error) {
	out := map[string]*majorLake{}
	for _, d := range descs {
		if len(d.Majors) < 2 || out[d.Name] != nil {
			continue
		}
		var majors []*heal.Dataset
		for _, n := range d.Majors {
			md := byName[n]
			if md == nil {
				log.Warn("a schema major has no descriptor: its majors are audited one by one", "dataset", d.Name, "major", n)
				majors = nil
				break
			}
			ds, err := md.Dataset()
			if err != nil {
				return nil, err
			}
			majors = append(majors, ds)
		}
		if majors == nil {
			continue
		}
		vs, err := evolve.New(majors...)
		if err != nil {
			return nil, fmt.Errorf("dataset %q was recorded with the schema majors %s: %w", d.Name, strings.Join(d.Majors, ", "), err)
		}
		ml := &majorLake{lake: vs.Lake(lake), majors: d.Majors}
		for _, n := range d.Majors {
			out[n] = ml
		}
	}
	return out, nil
}

// targets reads the descriptors and builds read-only engines.
func targets(ctx context.Context, cfg *config, lake *sink.Lake, log *slog.Logger) ([]*target, error) {
	descs, err := heal.Descriptors(ctx, lake)
	if err != nil {
		return nil, fmt.Errorf("read the datasets recorded in %s: %w", cfg.lake, err)
	}
	if len(descs) == 0 {
		return nil, fmt.Errorf("no dataset is recorded in %s: is it a heal lake? (an engine records its datasets when it runs)", cfg.lake)
	}
	byName := map[string]*heal.Descriptor{}
	var names []string
	for _, d := range descs {
		byName[d.Name] = d
		names = append(names, d.Name)
	}
	want := cfg.datasets
	if len(want) == 0 {
		want = names
	}
	lakes, err := majorLakes(descs, byName, lake, log)
	if err != nil {
		return nil, err
	}
	var out []*target
	for _, name := range want {
		d := byName[name]
		if d == nil {
			return nil, fmt.Errorf("no dataset %q in %s: it holds %s", name, cfg.lake, strings.Join(names, ", "))
		}
		ds, err := d.Dataset()
		if err != nil {
			return nil, err
		}
		t := &target{desc: d, ds: ds, ruleName: d.Rule}
		if t.ruleName == "" && d.DerivedFrom != "" && byName[d.DerivedFrom] != nil {
			t.ruleName = byName[d.DerivedFrom].Rule // a derived dataset follows its input's calendar
		}
		if cfg.rule != "" {
			t.ruleName = cfg.rule
		}
		if t.ruleName != "" {
			if t.rule, err = audit.ParseRule(t.ruleName); err != nil {
				return nil, fmt.Errorf("dataset %q was recorded with the rule %q, which heal does not know: pass -rule (%s)",
					name, t.ruleName, strings.Join(audit.RuleNames(), ", "))
			}
		}
		var engLake heal.Lake = lake
		if l := lakes[name]; l != nil {
			engLake, t.majors = l.lake, l.majors
		}
		t.eng, err = heal.New(ds, nil, engLake, &heal.Options{Keys: d.Keys, Rule: t.rule, Logger: log})
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// window decides the span to look at: the flags, else what the recorded
// audits cover (at most 7 days back from their end), else the data's last
// 7 days.
func window(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target) (heal.Window, error) {
	end := cfg.to
	if !cfg.from.IsZero() {
		if end.IsZero() {
			end = time.Now().UTC()
		}
		return heal.Window{Start: cfg.from, End: end}, nil
	}
	var lo, hi time.Time
	widen := func(w heal.Window) {
		if w.Empty() {
			return
		}
		if lo.IsZero() || w.Start.Before(lo) {
			lo = w.Start
		}
		if w.End.After(hi) {
			hi = w.End
		}
	}
	for _, t := range ts {
		audits, err := t.eng.Audits(ctx)
		if err != nil {
			return heal.Window{}, err
		}
		for _, a := range audits {
			widen(a.Window)
		}
	}
	if hi.IsZero() { // never audited: look at the data
		for _, t := range ts {
			err := lake.Inventory(ctx, t.ds, heal.Query{}, func(p heal.PartitionInfo) error {
				var first, last time.Time
				for at := range p.Present.All() {
					if first.IsZero() {
						first = at
					}
					last = at
				}
				if !first.IsZero() {
					widen(heal.Window{Start: first, End: last.Add(t.ds.Grain)})
				}
				return nil
			})
			if err != nil {
				return heal.Window{}, err
			}
		}
	}
	if !end.IsZero() {
		hi = end
	}
	if hi.IsZero() {
		hi = time.Now().UTC()
	}
	switch {
	case cfg.since > 0:
		lo = hi.Add(-cfg.since)
	case lo.IsZero() || hi.Sub(lo) > 7*24*time.Hour:
		lo = hi.Add(-7 * 24 * time.Hour)
	}
	return heal.Window{Start: lo, End: hi}, nil
}

func execute(ctx context.Context, cfg *config, stdout io.Writer, log *slog.Logger) error {
	keys, err := keyProvider(ctx, cfg)
	if err != nil {
		return err
	}
	lake, err := openLake(ctx, cfg.lake, keys, log)
	if err != nil {
		return err
	}
	ts, err := targets(ctx, cfg, lake, log)
	if err != nil {
		return err
	}
	switch cfg.cmd {
	case "compact":
		return compact(ctx, cfg, lake, ts, stdout)
	case "serve":
		return serveCmd(ctx, cfg, lake, ts, stdout, log)
	}
	w, err := window(ctx, cfg, lake, ts)
	if err != nil {
		return err
	}
	if cfg.tz == nil {
		cfg.tz = time.UTC
		for _, t := range ts {
			if s, ok := t.rule.(*audit.Session); ok && s.Location != nil {
				cfg.tz = s.Location
				break
			}
		}
	}
	switch cfg.cmd {
	case "audit":
		return auditCmd(ctx, cfg, ts, w, stdout)
	case "status":
		return statusCmd(ctx, cfg, lake, ts, w, stdout)
	case "report":
		return reportCmd(ctx, cfg, lake, ts, w, stdout)
	}
	return usagef("unknown command %q", cfg.cmd)
}

// collect gathers the report data of every target.
func collect(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target, w heal.Window) ([]*report.Dataset, error) {
	var out []*report.Dataset
	for _, t := range ts {
		d, err := report.Collect(ctx, t.eng, lake, t.desc.Keys, &report.Options{
			Window: w, Per: cfg.per, Prices: &cfg.prices, CostPer: cfg.costPer, Rule: t.ruleName, DerivedFrom: t.desc.DerivedFrom,
			Majors: t.majors,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func reportCmd(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target, w heal.Window, stdout io.Writer) error {
	ds, err := collect(ctx, cfg, lake, ts, w)
	if err != nil {
		return err
	}
	r := &report.Report{Title: "heal health report", Lake: cfg.lake, Generated: time.Now(), Location: cfg.tz, Datasets: ds}
	if cfg.out == "-" {
		return r.WriteHTML(stdout)
	}
	f, err := os.Create(cfg.out)
	if err != nil {
		return err
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d dataset(s), %s\n", cfg.out, len(ds), shortWindow(w.Align(cfg.per), cfg.tz))
	return nil
}

func compact(ctx context.Context, cfg *config, lake *sink.Lake, ts []*target, stdout io.Writer) error {
	var q heal.Query
	if !cfg.from.IsZero() || !cfg.to.IsZero() || cfg.since > 0 {
		w, err := window(ctx, cfg, lake, ts)
		if err != nil {
			return err
		}
		q.Window = w
	}
	for _, t := range ts {
		start := time.Now()
		n, err := lake.Compact(ctx, t.ds, q)
		var ke *sink.KeyError
		switch {
		case errors.As(err, &ke) && !cfg.hasKey():
			return fmt.Errorf("compact %s: %s has encrypted columns, which heal cannot rewrite without the lake's key: pass -local-key FILE or -kms-key KEY_ID; its partition was left as it was: %w", t.ds.Name, ke.File, err)
		case errors.As(err, &ke):
			return fmt.Errorf("compact %s: the key given cannot unwrap the data key of %s (another key-encryption key, or no right to decrypt); its partition was left as it was: %w", t.ds.Name, ke.File, err)
		case err != nil:
			return fmt.Errorf("compact %s: %w", t.ds.Name, err)
		}
		fmt.Fprintf(stdout, "%s: %d partition(s) compacted in %s\n", t.ds.Name, n, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func shortWindow(w heal.Window, loc *time.Location) string {
	s, e := w.Start.In(loc), w.End.In(loc)
	if s.Format("2006-01-02") == e.Format("2006-01-02") {
		return s.Format("2006-01-02 15:04") + "–" + e.Format("15:04 MST")
	}
	return s.Format("2006-01-02 15:04") + " – " + e.Format("2006-01-02 15:04 MST")
}
