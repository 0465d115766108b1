"""The monthly report (issue 17): its figures from the shared measures, rendered as PDF and XLSX."""
