"""Every Spanish text an operator reads, in one catalogue; code keeps English identifiers.

Each text is a format string with named fields, so callers never build Spanish sentences themselves and a
reviewer can read (and a translator change) every message in one place. Sections follow who shows them.
"""

from __future__ import annotations

# --- contacts: problems with an uploaded file or contact list (422 with row numbers) ----------------------

# --- api: answers of the HTTP routes --------------------------------------------------------------------------

# --- access: sign-in, roles, origins and limits ---------------------------------------------------------------

# --- campaign: pause and stop reasons, log lines operators read -----------------------------------------------

# --- whatsapp: what each Cloud API error code means for the operator ------------------------------------------
