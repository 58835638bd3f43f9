// Package reliability holds heal's crash, fault, concurrency and abuse
// tests: the evidence behind RELIABILITY.md at the repository root. It has
// no API; everything is in its _test.go files.
//
//   - crash_test.go: an engine in a child process (this test binary,
//     re-executed) is killed with SIGKILL at seeded moments inside writes,
//     compactions, repairs, resyntheses and ledger updates; after each kill
//     a fresh engine heals the lake and every invariant is checked.
//   - concurrency_test.go: two engines in two processes on one lake.
//   - sourcefaults_test.go: the Finnhub Source against a fake server that
//     fails 30% of its answers, and a symbol whose history never comes.
//   - lakefaults_test.go: disk full, permission denied, corrupt and foreign
//     Parquet files, partitions written by other tools.
//   - security_test.go: the API token never leaks; hostile keys never
//     write outside the lake; every HTTP call is bounded in time and size.
//
// The default run fits CI's budget; longer runs are behind flags and
// environment variables:
//
//	go test ./reliability -run Crash -kills=500
//	HEAL_KILLS=500 go test ./reliability -run Crash
package reliability
