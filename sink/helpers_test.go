package sink_test

import "github.com/apache/arrow/go/v17/parquet/compress"

var compressZstd = compress.Codecs.Zstd
