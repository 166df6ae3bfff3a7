//! Not built yet: see the project issues.
