//! Feeds many mutated and truncated manifests to the loader: it must never panic, and every
//! diagnostic must point inside the file.

use std::collections::BTreeMap;

const SEEDS: &[&str] = &[
    include_str!("fixtures/full.yml"),
    include_str!("fixtures/cloud.yml"),
    "services:\n  web:\n    build: .\n    port: ${PORT}\n    scale: {count: 1-3, targets: {cpu: 50}}\n",
    "a: &x {b: [1, 2, {c: *x}]}\n",
    "x: &a [*a]\n",
    "services: &s\n  web: *s\n",
];

const SPECIALS: &[&str] = &[
    ":",
    "-",
    "*",
    "&",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "\t",
    "!",
    "|",
    ">",
    "%",
    "@",
    "#",
    "?",
    ",",
    "\n",
    " ",
    "${X}",
    "${",
    "<<",
    "~",
    "null",
    "yes",
    "0x",
    "-1",
    "99999999999999999999",
    "é",
    "\u{0}",
    "\r\n",
    "---\n",
    "...\n",
];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() as usize) % n
        }
    }
}

fn check(text: &str, env: &BTreeMap<String, String>) {
    let lines = text.split('\n').count() + 1;
    let check_diags = |ds: &[dray_manifest::Diagnostic]| {
        for d in ds {
            assert!(
                d.line >= 1 && d.line <= lines,
                "line {} of {lines} for {text:?}: {d}",
                d.line
            );
            assert!(d.column >= 1, "column 0 for {text:?}: {d}");
        }
    };
    match dray_manifest::load("convox.yml", text, env) {
        Ok(l) => {
            check_diags(&l.warnings);
            let _ = l.manifest.to_yaml();
            let _ = l.manifest.to_json();
            for s in l.manifest.services.values() {
                let _ = s.command_args();
                let _ = s.resource_links();
                let _ = l.manifest.service_env(&s.name, env);
                let _ = l.manifest.runtime_env(&s.name, env);
            }
            for t in l.manifest.timers.values() {
                assert!(
                    t.cron().is_ok(),
                    "loaded timer with a bad schedule: {}",
                    t.schedule
                );
            }
        }
        Err(e) => {
            assert!(!e.errors.is_empty());
            check_diags(&e.errors);
            check_diags(&e.warnings);
            let _ = e.to_string();
        }
    }
}

fn char_boundaries(s: &str) -> Vec<usize> {
    let mut v: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    v.push(s.len());
    v
}

#[test]
fn truncations_never_panic() {
    let env = BTreeMap::new();
    for seed in SEEDS {
        for cut in char_boundaries(seed) {
            check(&seed[..cut], &env);
            check(&seed[cut..], &env);
        }
    }
}

#[test]
fn line_edits_never_panic() {
    let env = BTreeMap::new();
    for seed in SEEDS {
        let lines: Vec<&str> = seed.lines().collect();
        for i in 0..lines.len() {
            let mut removed = lines.clone();
            removed.remove(i);
            check(&removed.join("\n"), &env);
            let mut doubled = lines.clone();
            doubled.insert(i, lines[i]);
            check(&doubled.join("\n"), &env);
            let mut dedented = lines.clone();
            dedented[i] = lines[i].trim_start();
            check(&dedented.join("\n"), &env);
            let mut indented = lines.clone();
            let more = format!("  {}", lines[i]);
            indented[i] = &more;
            check(&indented.join("\n"), &env);
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Lcg(0x5eed);
    let mut env = BTreeMap::new();
    env.insert("X".to_string(), "a: [b".to_string());
    for round in 0..4000 {
        let seed = SEEDS[round % SEEDS.len()];
        let mut text = seed.to_string();
        for _ in 0..1 + rng.below(4) {
            let bounds = char_boundaries(&text);
            let at = bounds[rng.below(bounds.len())];
            match rng.below(3) {
                0 => text.insert_str(at, SPECIALS[rng.below(SPECIALS.len())]),
                1 => {
                    let end_idx =
                        bounds.iter().position(|b| *b == at).unwrap_or(0) + 1 + rng.below(8);
                    let end = bounds.get(end_idx).copied().unwrap_or(text.len());
                    text.replace_range(at..end, "");
                }
                _ => {
                    let end_idx = bounds.iter().position(|b| *b == at).unwrap_or(0) + 1;
                    let end = bounds.get(end_idx).copied().unwrap_or(text.len());
                    text.replace_range(at..end, SPECIALS[rng.below(SPECIALS.len())]);
                }
            }
        }
        check(&text, &env);
    }
}

#[test]
fn hostile_inputs_never_panic() {
    let env = BTreeMap::new();
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_map = "a:\n".to_string()
        + &(1..400)
            .map(|i| format!("{}b{i}:\n", " ".repeat(i * 2)))
            .collect::<String>();
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    for text in [
        deep.as_str(),
        deep_map.as_str(),
        bomb,
        "\u{feff}services: {}",
        "\0\0\0",
        "services:\n  web:\n    scale: {count: {min: 99999999999999999999}}\n",
        "services:\n  web:\n    port: -1\n    ports: [-1, 70000, 0]\n",
        "services:\n  web:\n    scale: {min: -5, max: 9223372036854775807}\n",
        "timers:\n  t:\n    schedule: '*/4294967295 * * * *'\n    command: x\n    service: web\nservices:\n  web: {}\n",
        "? [a, b]\n: c\n",
        "!!binary aGVsbG8=",
        "%YAML 1.1\n---\nservices: {}\n",
        "services: !!str x",
    ] {
        check(text, &env);
    }
}
