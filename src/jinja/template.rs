//! Templates compiled so that they behave like dbt's (Python) Jinja.
//!
//! minijinja (unforked) compiles a template to instructions; one pass over them ([`pythonize`])
//! changes what Python's semantics need, before anything runs:
//! - a list or dict display (`[]`, `{'a': x}`) makes a new Python [`List`]/[`Dict`] each time it
//!   is evaluated: `BuildList`/`BuildMap` become calls of [`LIST`]/[`DICT`], and a display the
//!   compiler folded into a constant is copied by [`FRESH`] (a folded constant is shared by
//!   every render, so it must never be handed out mutable);
//! - every macro is wrapped by [`MACRO`] into a [`PyMacro`], which gives `return()` a slot per
//!   call (so `return` works in any macro, called from anywhere) and, when the body reads
//!   `varargs` or `kwargs`, collects extra arguments into them as Jinja2 does (dbt's generic
//!   tests get their extra yml arguments through `kwargs`);
//! - `+` and `-` call [`ADD`]/[`SUB`], which add Python's `datetime`/`date`/`timedelta`
//!   arithmetic to minijinja's (which has no operator overloading for objects).
//!
//! Why instructions and not the template text or a fork: a text rewrite misses what is not
//! written as a literal where it looked for one, and shifts error columns; a fork of
//! minijinja is a second compiler to keep. The instruction set is minijinja's public
//! `unstable_machinery`, pinned with minijinja's exact version in Cargo.toml; the tests in this
//! module fail if a new version compiles differently.
//!
//! Templates are rendered through `machinery::eval`, which is what minijinja's own
//! `Template::render` calls.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

use minijinja::machinery::{self, CompiledTemplate, Instruction, Instructions, TemplateConfig};
use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};

use super::python;

/// `CallFunction(LIST, n)`: a list of the `n` values on the stack.
pub const LIST: &str = "__py_list";
/// `CallFunction(DICT, 2n)`: a dict of the `n` key/value pairs on the stack.
pub const DICT: &str = "__py_dict";
/// A display the compiler folded into a constant, copied fresh.
pub const FRESH: &str = "__py_fresh";
/// Wraps a macro just built: `(macro, extras)`, extras 1 = varargs, 2 = kwargs.
pub const MACRO: &str = "__py_macro";
/// `a + b` and `a - b`, with Python's date arithmetic.
const ADD: &str = "__py_add";
const SUB: &str = "__py_sub";

const VARARGS: u8 = 1;
const KWARGS: u8 = 2;

/// The functions the compiled instructions call.
pub fn install(env: &mut Environment<'static>) {
    env.add_function(LIST, |args: minijinja::value::Rest<Value>| {
        python::list(args.0)
    });
    env.add_function(DICT, |args: minijinja::value::Rest<Value>| {
        python::dict(
            args.0
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default())),
        )
    });
    env.add_function(FRESH, |v: Value| python::fresh(&v));
    env.add_function(ADD, |a: Value, b: Value| super::datetime::add(&a, &b));
    env.add_function(SUB, |a: Value, b: Value| super::datetime::sub(&a, &b));
    env.add_function(MACRO, |inner: Value, extras: u8| -> Result<Value, Error> {
        let added = usize::from(extras & VARARGS != 0) + usize::from(extras & KWARGS != 0);
        let mut params: Vec<String> = inner
            .get_attr("arguments")?
            .try_iter()?
            .map(|v| v.to_string())
            .collect();
        params.truncate(params.len().saturating_sub(added));
        Ok(Value::from_object(PyMacro {
            inner,
            params,
            extras,
        }))
    });
}

fn config() -> TemplateConfig {
    TemplateConfig {
        syntax_config: minijinja::syntax::SyntaxConfig::default(),
        default_auto_escape: Arc::new(|_| AutoEscape::None),
    }
}

/// Compiles `source` (named `name` in errors) with Python's semantics.
pub fn compile<'s>(name: &'s str, source: &'s str) -> Result<CompiledTemplate<'s>, Error> {
    let mut t = CompiledTemplate::new(name, source, &config())?;
    t.instructions = pythonize(&t.instructions);
    for block in t.blocks.values_mut() {
        *block = pythonize(block);
    }
    Ok(t)
}

/// Jinja2's `{% do expr %}` takes any expression (`{% do a.append(x) if c else b.append(x) %}`,
/// as in fivetran_utils); minijinja's takes only a call. For a template that fails to compile
/// on that alone: its source with every `do` tag read as `{% set __rsdbt_do = expr %}`, which
/// evaluates the expression and drops its value the same way. Only then, so other templates'
/// error columns stay as written.
pub fn with_any_do(e: &Error, source: &str) -> Option<String> {
    if e.kind() != ErrorKind::SyntaxError
        || !e
            .detail()
            .is_some_and(|d| d.starts_with("expected call expression"))
    {
        return None;
    }
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        let (before, tag) = rest.split_at(at);
        out.push_str(before);
        let body = tag[2..].trim_start_matches(['-', '+']);
        let opened = tag.len() - body.len();
        let inner = body.trim_start();
        let keyword = inner
            .strip_prefix("do")
            .filter(|r| r.starts_with(char::is_whitespace));
        out.push_str(&tag[..opened]);
        match keyword {
            Some(expr) => {
                out.push_str(&body[..body.len() - inner.len()]);
                out.push_str("set __rsdbt_do =");
                rest = expr;
            }
            None => rest = body,
        }
    }
    out.push_str(rest);
    (out != source).then_some(out)
}

/// Renders a compiled template with `ctx` as its variables.
pub fn render(env: &Environment, t: &CompiledTemplate, ctx: Value) -> Result<String, Error> {
    let mut out = String::with_capacity(t.buffer_size_hint);
    eval(env, t, ctx, &mut out)?;
    Ok(out)
}

/// Runs a template's top level into `out`; the state it leaves (its macros) comes back.
fn eval<'env, 't>(
    env: &'env Environment<'env>,
    t: &'t CompiledTemplate<'env>,
    ctx: Value,
    out: &mut String,
) -> Result<State<'t, 'env>, Error> {
    let (_, state) = machinery::eval(
        env,
        &t.instructions,
        ctx,
        &t.blocks,
        &mut machinery::make_string_output(out),
        AutoEscape::None,
    )?;
    Ok(state)
}

/// Compiles and renders `source` once.
pub fn render_str(
    env: &Environment,
    name: &str,
    source: &str,
    ctx: Value,
) -> Result<String, Error> {
    match compile(name, source) {
        Ok(t) => render(env, &t, ctx),
        Err(e) => match with_any_do(&e, source) {
            Some(source) => render(env, &compile(name, &source)?, ctx),
            None => Err(e),
        },
    }
}

/// Calls macro `name` of another (macro) file from `state`: runs that file's top level in a
/// state of its own, then the macro there.
///
/// A macro can only run in the state that built it (minijinja checks), yet the arguments may
/// hold macros of the calling file: `{% call other_file_macro() %}body{% endcall %}` passes
/// the body as `caller`. Those are handed over as [`BoundMacro`]s that run in the calling
/// state, which outlives this call.
pub fn call_in_file(
    state: &mut State,
    t: &CompiledTemplate,
    ctx: Value,
    name: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let env = state.env();
    let home = Arc::new(Home(AtomicPtr::new((state as *mut State).cast::<()>())));
    let args = args
        .iter()
        .map(|a| bind(a, &home))
        .collect::<Result<Vec<_>, _>>()?;
    let out = with_state(env, t, ctx, |st| {
        let m = st.lookup(name).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownFunction,
                format!("macro '{name}' not found"),
            )
        })?;
        m.call(st, &args)
    });
    // The calling state goes on without us: a bound macro kept beyond this call must not run.
    home.0.store(std::ptr::null_mut(), Ordering::Release);
    out
}

/// The state a [`BoundMacro`] runs in; null once that state may be gone.
#[derive(Debug)]
struct Home(AtomicPtr<()>);

fn bind(v: &Value, home: &Arc<Home>) -> Result<Value, Error> {
    if v.downcast_object_ref::<PyMacro>().is_some() {
        return Ok(Value::from_object(BoundMacro {
            inner: v.clone(),
            home: home.clone(),
        }));
    }
    if v.is_kwargs() {
        let kw: Kwargs = Kwargs::try_from(v.clone())?;
        let pairs = kw
            .args()
            .map(|k| Ok((k.to_string(), bind(&kw.get::<Value>(k)?, home)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        return Ok(Value::from(Kwargs::from_iter(pairs)));
    }
    Ok(v.clone())
}

/// A macro of a calling file, called from a macro of another file (see [`call_in_file`]).
#[derive(Debug)]
struct BoundMacro {
    inner: Value,
    home: Arc<Home>,
}

impl Object for BoundMacro {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.inner
            .get_attr(key.as_str()?)
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn call(self: &Arc<Self>, _state: &mut State, args: &[Value]) -> Result<Value, Error> {
        let home = self.home.0.load(Ordering::Acquire);
        if home.is_null() {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a macro passed to another macro can only be called while that macro runs",
            ));
        }
        // SAFETY: `home` was taken from the `&mut State` of a `call_in_file` still on this
        // thread's stack (it is nulled before that call returns, and renders never change
        // threads); that state is not touched by its owner until the nested call returns,
        // so this is the only live reference to it.
        let home = unsafe { &mut *home.cast::<State>() };
        self.inner.call(home, args)
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// Runs a template's top level (defining its macros), then `f` with the state it left.
pub fn with_state<R>(
    env: &Environment,
    t: &CompiledTemplate,
    ctx: Value,
    f: impl FnOnce(&mut State) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut out = String::new();
    let mut state = eval(env, t, ctx, &mut out)?;
    f(&mut state)
}

self_cell::self_cell!(
    /// A template compiled once and kept (macro files): its name and source, and the
    /// instructions that borrow them.
    pub struct Kept {
        owner: (Box<str>, Arc<str>),
        #[covariant]
        dependent: CompiledTemplate,
    }
);

impl Kept {
    pub fn compile(name: &str, source: Arc<str>) -> Result<Kept, Error> {
        let kept = |source: Arc<str>| {
            Kept::try_new((name.into(), source), |(name, source)| {
                compile(name, source)
            })
        };
        kept(source.clone()).or_else(|e| match with_any_do(&e, &source) {
            Some(rewritten) => kept(Arc::from(rewritten)),
            None => Err(e),
        })
    }

    pub fn template(&self) -> &CompiledTemplate<'_> {
        self.borrow_dependent()
    }

    pub fn source(&self) -> &Arc<str> {
        &self.borrow_owner().1
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<template {}>", self.borrow_owner().0)
    }
}

/// The instructions with Python's semantics (see the module header). Instructions may be
/// inserted, so every jump target and macro offset is mapped to its new index.
fn pythonize<'s>(old: &Instructions<'s>) -> Instructions<'s> {
    let len = (0..).take_while(|i| old.get(*i).is_some()).count() as u32;
    // What each old instruction becomes: a list of instructions.
    let mut out: Vec<Vec<Instruction<'s>>> = (0..len)
        .map(|i| vec![old.get(i).cloned().expect("in range")])
        .collect();
    for i in 0..len {
        let instr = old.get(i).expect("in range");
        match instr {
            Instruction::BuildList(Some(n)) if *n <= usize::from(u16::MAX) => {
                out[i as usize] = vec![Instruction::CallFunction(LIST, Some(*n as u16))];
            }
            Instruction::Add => out[i as usize] = vec![Instruction::CallFunction(ADD, Some(2))],
            Instruction::Sub => out[i as usize] = vec![Instruction::CallFunction(SUB, Some(2))],
            Instruction::BuildMap(n) if *n * 2 <= usize::from(u16::MAX) => {
                out[i as usize] = vec![Instruction::CallFunction(DICT, Some((*n * 2) as u16))];
            }
            Instruction::LoadConst(v)
                if python::is_plain_container(v)
                    && !matches!(old.get(i + 1), Some(Instruction::BuildMacro(..))) =>
            {
                out[i as usize].push(Instruction::CallFunction(FRESH, Some(1)));
            }
            Instruction::BuildMacro(_, start, _) => {
                let body: BTreeSet<&str> = (*start..i)
                    .filter_map(|j| match old.get(j) {
                        Some(Instruction::Lookup(name)) => Some(*name),
                        _ => None,
                    })
                    .collect();
                let mut extras = 0u8;
                let mut names = Vec::new();
                if body.contains("varargs") {
                    extras |= VARARGS;
                    names.push("varargs");
                }
                if body.contains("kwargs") {
                    extras |= KWARGS;
                    names.push("kwargs");
                }
                if extras != 0 {
                    // The macro takes them as its last parameters; its body stores its
                    // arguments from the stack, last first.
                    if let Some(Instruction::LoadConst(spec)) = old.get(i - 1) {
                        let mut spec: Vec<Value> =
                            spec.try_iter().map(Iterator::collect).unwrap_or_default();
                        spec.extend(names.iter().map(|n| Value::from(*n)));
                        out[i as usize - 1] = vec![Instruction::LoadConst(Value::from(spec))];
                    }
                    let stores = names.iter().rev().map(|n| Instruction::StoreLocal(n));
                    let first = &mut out[*start as usize];
                    let original = std::mem::take(first);
                    first.extend(stores);
                    first.extend(original);
                }
                out[i as usize].push(Instruction::LoadConst(Value::from(extras)));
                out[i as usize].push(Instruction::CallFunction(MACRO, Some(2)));
            }
            _ => {}
        }
    }
    // Old index → new index of its first instruction (and `len` → the end).
    let mut map = Vec::with_capacity(len as usize + 1);
    let mut at = 0u32;
    for group in &out {
        map.push(at);
        at += group.len() as u32;
    }
    map.push(at);
    let target = |t: &u32| map.get(*t as usize).copied().unwrap_or(*t);
    let mut new = Instructions::new(old.name(), old.source());
    for (i, group) in out.into_iter().enumerate() {
        let span = old.get_span(i as u32);
        let line = old.get_line(i as u32);
        for instr in group {
            let instr = match instr {
                Instruction::Jump(t) => Instruction::Jump(target(&t)),
                Instruction::JumpIfFalse(t) => Instruction::JumpIfFalse(target(&t)),
                Instruction::JumpIfFalseOrPop(t) => Instruction::JumpIfFalseOrPop(target(&t)),
                Instruction::JumpIfTrueOrPop(t) => Instruction::JumpIfTrueOrPop(target(&t)),
                Instruction::Iterate(t) => Instruction::Iterate(target(&t)),
                Instruction::BuildMacro(name, t, flags) => {
                    Instruction::BuildMacro(name, target(&t), flags)
                }
                other => other,
            };
            match (span, line) {
                (Some(span), _) => new.add_with_span(instr, span),
                (None, Some(line)) => new.add_with_line(instr, line as u16),
                (None, None) => new.add(instr),
            };
        }
    }
    new
}

/// A macro as Python's Jinja calls it: `return(x)` ends it with `x`; extra positional
/// arguments go to `varargs` and unknown keyword arguments to `kwargs` when its body reads them.
#[derive(Debug)]
pub struct PyMacro {
    inner: Value,
    /// Its declared parameters.
    params: Vec<String>,
    extras: u8,
}

impl PyMacro {
    fn arguments(&self, args: &[Value]) -> Result<Vec<Value>, Error> {
        if self.extras == 0 {
            return Ok(args.to_vec());
        }
        let (pos, kwargs): (&[Value], Option<Kwargs>) = match args.last() {
            Some(last) if last.is_kwargs() => {
                let (pos, kw): (&[Value], Kwargs) = from_args(args)?;
                (pos, Some(kw))
            }
            _ => (args, None),
        };
        let declared = pos.len().min(self.params.len());
        let mut out: Vec<Value> = pos[..declared].to_vec();
        let mut named: Vec<(String, Value)> = Vec::new();
        let mut extra_named: Vec<(Value, Value)> = Vec::new();
        if let Some(kw) = &kwargs {
            for key in kw.args() {
                let v: Value = kw.get(key)?;
                if key == "caller" || self.params.iter().any(|p| p == key) {
                    named.push((key.to_string(), v));
                } else if self.extras & KWARGS != 0 {
                    extra_named.push((Value::from(key), v));
                } else {
                    named.push((key.to_string(), v));
                }
            }
        }
        if self.extras & VARARGS != 0 {
            named.push(("varargs".into(), python::list(pos[declared..].to_vec())));
        } else {
            out.extend(pos[declared..].iter().cloned());
        }
        if self.extras & KWARGS != 0 {
            named.push(("kwargs".into(), python::dict(extra_named)));
        }
        out.push(Value::from(Kwargs::from_iter(named)));
        Ok(out)
    }
}

impl Object for PyMacro {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "arguments" => Some(Value::from(self.params.clone())),
            k => self.inner.get_attr(k).ok().filter(|v| !v.is_undefined()),
        }
    }

    fn call(self: &Arc<Self>, state: &mut State, args: &[Value]) -> Result<Value, Error> {
        let args = self.arguments(args)?;
        let slot = ReturnSlot::push();
        let out = self.inner.call(state, &args);
        match slot.pop() {
            Some(v) => Ok(v),
            None => out,
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

thread_local! {
    /// One slot per macro call in flight on this thread (a render never changes threads):
    /// `return(x)` fills the innermost.
    static RETURNS: RefCell<Vec<Option<Value>>> = const { RefCell::new(Vec::new()) };
}

/// A macro call's `return()` slot; dropping it (also on unwinding) removes it.
struct ReturnSlot(usize);

impl ReturnSlot {
    fn push() -> ReturnSlot {
        RETURNS.with(|r| {
            let mut r = r.borrow_mut();
            r.push(None);
            ReturnSlot(r.len())
        })
    }

    fn pop(self) -> Option<Value> {
        RETURNS.with(|r| r.borrow_mut().get_mut(self.0 - 1).and_then(Option::take))
    }
}

impl Drop for ReturnSlot {
    fn drop(&mut self) {
        RETURNS.with(|r| r.borrow_mut().truncate(self.0 - 1));
    }
}

/// `return(value)`: ends the innermost macro call with `value` (an error unwinds the rest of
/// its body up to [`PyMacro::call`]). Outside any macro it is the value itself.
pub fn return_value(value: Value) -> Result<Value, Error> {
    RETURNS.with(|r| match r.borrow_mut().last_mut() {
        Some(slot) => {
            if slot.is_none() {
                *slot = Some(value);
            }
            Err(Error::new(
                ErrorKind::InvalidOperation,
                "return() outside a macro call",
            ))
        }
        None => Ok(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        python::install(&mut env);
        install(&mut env);
        env.add_function("return", return_value);
        env
    }

    fn run(src: &str) -> String {
        let env = env();
        render_str(&env, "t.sql", src, Value::from(())).unwrap_or_else(|e| format!("ERROR {e:#}"))
    }

    #[test]
    fn displays_are_python_lists_and_dicts_each_time() {
        assert_eq!(
            run("{% set x = [] %}{% do x.append(1) %}{% do x.extend([2, 3]) %}{{ x }}"),
            "[1, 2, 3]"
        );
        // A folded constant is copied: the second loop pass starts from an empty list.
        assert_eq!(
            run("{% for i in [1, 2] %}{% set y = [] %}{% do y.append(i) %}{{ y }}{% endfor %}"),
            "[1][2]"
        );
        assert_eq!(
            run(
                "{% set d = {'b': 1, 'a': [2]} %}{% do d['a'].append(3) %}{% do d.update({'c': 4}) %}{{ d.keys() | list }} {{ d['a'] }}"
            ),
            "['b', 'a', 'c'] [2, 3]"
        );
        // Inside macro arguments and return values, not only `set`.
        assert_eq!(
            run(
                "{% macro f(xs) %}{% do xs.append('z') %}{{ return(xs) }}{% endmacro %}{% set r = f(['a']) %}{% do r.append('q') %}{{ r | join(',') }}"
            ),
            "a,z,q"
        );
    }

    #[test]
    fn macros_take_varargs_and_kwargs_when_their_body_reads_them() {
        assert_eq!(
            run(
                "{% macro t(model, column_name) %}{{ column_name }} {{ kwargs.get('at_least') }} {{ kwargs | length }}{% endmacro %}{{ t('m', 'c', at_least=0.9, other=1) }}"
            ),
            "c 0.9 2"
        );
        assert_eq!(
            run("{% macro v(a) %}{{ a }}:{{ varargs | join('-') }}{% endmacro %}{{ v(1, 2, 3) }}"),
            "1:2-3"
        );
        assert!(run("{% macro p(a) %}{{ a }}{% endmacro %}{{ p(1, b=2) }}").starts_with("ERROR"));
    }

    #[test]
    fn return_ends_any_macro_with_its_value() {
        assert_eq!(
            run(
                "{% macro f() %}{{ return({'k': [1]}) }}not this{% endmacro %}{% set v = f() %}{{ v['k'][0] + 1 }}"
            ),
            "2"
        );
        assert_eq!(
            run(
                "{% macro g(n) %}{% if n > 0 %}{{ return(n * 10) }}{% endif %}{{ return(-1) }}{% endmacro %}{{ g(2) }} {{ g(0) }}"
            ),
            "20 -1"
        );
    }

    #[test]
    fn errors_keep_their_lines() {
        let env = env();
        let err = render_str(
            &env,
            "t.sql",
            "a\n{% set x = [1] %}\n{{ x.nope() }}",
            Value::from(()),
        )
        .unwrap_err();
        assert_eq!(err.line(), Some(3));
    }
}
