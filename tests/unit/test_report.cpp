// Placeholder: tests of the study report.
