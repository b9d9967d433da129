// svc.mjs with an AV1 publisher (`codec=av1`, L3T3_KEY unless SVC_MODE says otherwise): the
// server selects its layers by the Dependency Descriptor header extension.
process.env.SVC_CODEC = 'av1';
await import('./svc.mjs');
