package nodeagent

import "os"

// SetWriteFault makes every write to a partial file (or to a decompressed
// work file) call f first and fail with its error, if any: the seam for
// ENOSPC where no tiny file system can be mounted.
func SetWriteFault(s *Server, f func(n int) error) { s.writeFault = f }

// SetLinkPublish makes the agent publish by link and unlink, as it does
// where the file system refuses RENAME_NOREPLACE (NFS).
func SetLinkPublish(s *Server, on bool) { s.linkPublish = on }

// SetDatasync replaces the fdatasync done before each checkpoint.
func SetDatasync(s *Server, f func(*os.File) error) { s.datasync = f }

// SetConvertReport has f called with each of qemu-img's progress reports,
// once the job shows it; f holds the conversion's progress reading (not
// qemu-img) while it runs.
func SetConvertReport(s *Server, f func(percent float64)) { s.convertReport = f }
