;; The smallest valid core module: a component is expected.
(module)
