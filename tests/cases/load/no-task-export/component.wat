;; The smallest valid component: no imports, no exports.
(component)
