package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// source is a file the mirror serves, with its sha256.
type source struct {
	Name   string
	Path   string
	Size   int64
	SHA256 string // hex
}

// Checksum is the file's checksum as the APIs take it.
func (s source) Checksum() string { return "sha256:" + s.SHA256 }

// makeSource writes a file of pseudo-random bytes (incompressible, like a
// qcow2 image) into dir, or reuses the one an earlier run left with its
// .sha256 beside it.
func makeSource(dir, name string, size int64) (source, error) {
	s := source{Name: name, Path: filepath.Join(dir, name), Size: size}
	if fi, err := os.Stat(s.Path); err == nil && fi.Size() == size {
		if b, err := os.ReadFile(s.Path + ".sha256"); err == nil {
			s.SHA256 = strings.TrimSpace(string(b))
			return s, nil
		}
	}
	f, err := os.Create(s.Path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	h := sha256.New()
	var seed [32]byte
	copy(seed[:], name)
	rnd := rand.NewChaCha8(seed)
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rnd, size); err != nil {
		return s, fmt.Errorf("write %s: %w", s.Path, err)
	}
	if err := w.Flush(); err != nil {
		return s, err
	}
	if err := f.Close(); err != nil {
		return s, err
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	return s, os.WriteFile(s.Path+".sha256", []byte(s.SHA256+"\n"), 0o644)
}
