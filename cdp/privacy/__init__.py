"""Data-subject rights: privacy requests, the subject-data registry, erasure, access packages,
rectification, restriction, objection and retention."""
