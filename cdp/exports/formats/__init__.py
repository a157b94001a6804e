"""The pieces behind :mod:`cdp.exports.audience_formats`: hashing, field normalisers and one
module per ad platform. Import the public API from ``cdp.exports.audience_formats``."""
