package auth

// Argon2Runs reports how many argon2id computations s's password checks made.
func Argon2Runs(s *Service) uint64 { return s.argon2Runs.Load() }

// HashPeak reports the most argon2id computations s ever ran at once.
func HashPeak(s *Service) int64 { return s.hashPeak.Load() }
