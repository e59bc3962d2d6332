"""Settlement: pay the merchants, prove the money is there, hand the books to the tax adviser.

Pure parts (no database): `rules` (fee, VAT, what is paid and what is carried forward),
`sepa` (the bank file), `camt` (the bank's statements), `exports` (DATEV and plain CSV),
`statement` (the merchant's statement and fee invoice as HTML and PDF). The service that
books and stores all of it is `hcard.server.services.settlement`.
"""
