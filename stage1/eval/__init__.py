"""The evaluation stage: every variant generates on the held-out items, one model at a time; criteria
score the responses, paired statistics compare the variants, and a report is written."""
