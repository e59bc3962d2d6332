"""One module per capability; each public function owns its transaction and permission check."""
