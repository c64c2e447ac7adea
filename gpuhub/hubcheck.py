"""Check rendered Zero to JupyterHub values against the real JupyterHub classes.

`hub.config` sections and every `singleuser.profileList` override are pushed
through the traits of the real JupyterHub / authenticator / KubeSpawner classes,
so a typo or a wrong type is reported here instead of by a hub pod that
crash-loops (or, for profile overrides, silently ignores it).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
import warnings

# What the chart uses when the values leave these unset: z2jh's values.yaml sets
# authenticator_class to "dummy", and its jupyterhub_config.py sets KubeSpawner.
CHART_DEFAULT_CLASSES = {
    "authenticator_class": "dummy",
    "spawner_class": "kubespawner.KubeSpawner",
}

# Keys KubeSpawner documents for profile_list items (see KubeSpawner.profile_list).
PROFILE_KEYS = {
    "display_name",
    "description",
    "default",
    "slug",
    "kubespawner_override",
    "profile_options",
}
OPTION_KEYS = {"display_name", "choices", "unlisted_choice"}
CHOICE_KEYS = {"display_name", "default", "kubespawner_override"}
UNLISTED_CHOICE_KEYS = {
    "enabled",
    "display_name",
    "display_name_in_choices",
    "validation_regex",
    "validation_message",
    "kubespawner_override",
}

# Validators log through obj.log; give bare instances a logger nobody prints,
# and attach a collecting handler while a value is checked.
_LOG = logging.getLogger(__name__ + ".traits")
_LOG.propagate = False
_LOG.addHandler(logging.NullHandler())


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


REQUIRED = ("jupyterhub", "kubespawner", "oauthenticator")


def missing() -> list:
    """The real classes' packages not installed here (the optional `hubcheck` extra)."""
    import importlib.util
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def check_hub_values(values: dict) -> list[str]:
    """Return human-readable problems in z2jh helm `values` ([] = fine)."""
    # Imported here: jupyterhub.app takes seconds to import, and only this needs it.
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.spawner import Spawner
    from kubespawner import KubeSpawner

    problems: list[str] = []
    values = values or {}  # an empty values file loads as None
    config = (values.get("hub") or {}).get("config") or {}
    if not isinstance(config, dict):
        return [f"hub.config: expected a mapping, got {type(config).__name__}"]

    # The JupyterHub section goes first: it decides which authenticator and
    # spawner the other sections configure.
    app_section = config.get("JupyterHub") or {}
    if not isinstance(app_section, dict):
        problems.append("hub.config.JupyterHub: expected a mapping")
        app_section = {}
    app = _check_section(JupyterHub, app_section, "hub.config.JupyterHub", problems)
    in_use = {}
    for name, default in CHART_DEFAULT_CLASSES.items():
        if name in app_section:
            in_use[name] = app.get(name)  # None when it did not resolve
        else:
            trait = JupyterHub.class_traits()[name]
            path = f"(chart default) JupyterHub.{name}"
            in_use[name] = _check_value(_bare(JupyterHub), trait, default, path, problems)[1]
    authenticator, spawner = in_use["authenticator_class"], in_use["spawner_class"]

    # KubeSpawner is listed explicitly: it registers no entry point, so it is
    # not among JupyterHub.classes, and the chart configures it regardless.
    known = _known_classes(JupyterHub, KubeSpawner, authenticator, spawner)
    for name, section in config.items():
        path = f"hub.config.{name}"
        if name == "JupyterHub":
            continue
        if name not in known:
            problems.append(f"{path}: unknown class{_hint(name, known)}")
            continue
        if not isinstance(section, dict):
            problems.append(f"{path}: expected a mapping of option: value")
            continue
        cls = known[name]
        # traitlets applies a section to every instance whose class inherits
        # from it, so Authenticator.x is checked against the authenticator in use.
        for role, base, used in (("authenticator", Authenticator, authenticator),
                                 ("spawner", Spawner, spawner)):
            if used and issubclass(cls, base):
                if issubclass(used, cls):
                    cls = used
                else:
                    problems.append(f"{path}: has no effect, the {role} in use is {used.__name__}")
        _check_section(cls, section, path, problems)

    _check_credentials(authenticator, config, values, problems)
    profile_spawner = spawner if spawner and issubclass(spawner, KubeSpawner) else KubeSpawner
    profiles = (values.get("singleuser") or {}).get("profileList") or []
    _check_profiles(_bare(profile_spawner), profiles, problems)
    return problems


def _env_names(values: dict) -> set:
    """The variables hub.extraEnv sets (Z2JH 4.4.0 _helpers.tpl jupyterhub.extraEnv: a list of
    EnvVars as is, or a map whose key is the name unless its value names another)."""
    env = (values.get("hub") or {}).get("extraEnv") or {}
    if isinstance(env, list):
        return {e.get("name") for e in env if isinstance(e, dict)}
    if isinstance(env, dict):
        return {(v.get("name") if isinstance(v, dict) and v.get("name") else k) for k, v in env.items()}
    return set()


def _check_credentials(authenticator, config, values, problems):
    """An OAuthenticator's client_id and client_secret that hub.config leaves out come from the
    hub's environment: resolved here as the real class does (OAuthenticator 17.4.0 oauth2.py
    _client_id_default / _client_secret_default: its client_id_env, then OAUTH_CLIENT_ID), with a
    stand-in for each variable hub.extraEnv sets and none of this process's own."""
    try:
        from oauthenticator.oauth2 import OAuthenticator
    except ImportError:
        return
    if authenticator is None or not issubclass(authenticator, OAuthenticator):
        return
    import os
    from unittest import mock
    given = _env_names(values)
    for trait, fallback in (("client_id", "OAUTH_CLIENT_ID"), ("client_secret", "OAUTH_CLIENT_SECRET")):
        if any(trait in (config.get(c.__name__) or {}) for c in authenticator.mro()):
            continue
        read = [name for name in (getattr(authenticator, f"{trait}_env", ""), fallback) if name]
        environ = {k: v for k, v in os.environ.items() if k not in read}
        environ.update({name: "stand-in-for-check" for name in read if name in given})
        with mock.patch.dict(os.environ, environ, clear=True):
            value = getattr(_bare(authenticator), trait)
        if not value:
            problems.append(f"hub.config.{authenticator.__name__}.{trait}: not set, and hub.extraEnv sets none of "
                            f"{', '.join(read)}, which {authenticator.__name__} reads it from")


def _bare(cls):
    """An instance with working traits whose __init__ never ran.

    HasTraits.__new__ already sets up trait storage, which is all validation
    needs. Skipping __init__ matters for KubeSpawner: it calls
    kubernetes_asyncio load_config() and builds a shared API client, which need
    a cluster (or kubeconfig) and an event loop. Authenticator/JupyterHub
    __init__ likewise do setup a check has no use for.
    """
    obj = cls.__new__(cls)
    obj.log = _LOG
    return obj


def _capture(path, problems, func, *args):
    """Run func, turning its exception, warnings and warning logs into problems."""
    collect = _Collect()
    _LOG.addHandler(collect)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return True, func(*args)
            except Exception as e:  # TraitError, or ValueError from @validate hooks
                problems.append(f"{path}: {_tidy(str(e))}")
                return False, None
    finally:
        _LOG.removeHandler(collect)
        for message in collect.messages + [str(w.message) for w in caught]:
            problems.append(f"{path}: JupyterHub would warn: {_tidy(message)}")


def _tidy(message):
    # traitlets sometimes puts the instance repr (with its address) in the text
    message = re.sub(r"<[\w.]+\.(\w+) object at 0x[0-9a-f]+>", r"\1", message)
    message = re.sub(r"<module '([\w.]+)' from '[^']*'>", r"'\1'", message)
    return " ".join(message.split()).rstrip(".")


def _check_value(obj, trait, value, path, problems):
    """Validate one value as setattr would; return (ok, validated value)."""
    ok, result = _capture(path, problems, trait._validate, obj, value)
    if not ok and isinstance(value, str) and hasattr(trait, "load_entry_points"):
        problems[-1] += _class_hint(trait, value)  # authenticator_class & co
    return ok, result


def _check_section(cls, section, path, problems):
    """Check a hub.config section like Configurable loads it; return valid values."""
    obj = _bare(cls)
    traits = cls.class_traits(config=True)
    # Loading config holds cross-validation (@validate hooks) until every value
    # is in, because hooks read sibling options (public_url reads base_url).
    obj._cross_validation_lock = True
    valid = {}
    for name, value in section.items():
        trait = _lookup(cls, traits, name, f"{path}.{name}", problems)
        if trait is not None:
            ok, result = _check_value(obj, trait, value, f"{path}.{name}", problems)
            if ok:
                valid[name] = result
    obj._trait_values.update(valid)
    obj._cross_validation_lock = False
    for name, value in valid.items():
        _capture(f"{path}.{name}", problems, traits[name]._cross_validate, obj, value)
    return valid


def _lookup(cls, traits, name, path, problems):
    """The trait called name, or None after reporting why there is none."""
    if name in traits:
        return traits[name]
    # KubeSpawner keeps old names as properties that forward to the new trait
    deprecated = getattr(cls, "_deprecated_traits", {})
    if name in deprecated:
        new, version = deprecated[name]
        while new in deprecated:
            new = deprecated[new][0]
        problems.append(f"{path}: deprecated since {cls.__name__} {version}, use {new}")
    else:
        problems.append(f"{path}: unknown option for {cls.__name__}{_hint(name, traits)}")
    return None


def _check_overrides(obj, overrides, path, problems, check_types=True):
    """KubeSpawner applies overrides with setattr, which accepts any name."""
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        problems.append(f"{path}: expected a mapping of option: value")
        return
    traits = type(obj).class_traits(config=True)
    for name, value in overrides.items():
        trait = _lookup(type(obj), traits, name, f"{path}.{name}", problems)
        # callables are resolved at spawn time, so only their name is checkable
        if trait is not None and check_types and not callable(value):
            _check_value(obj, trait, value, f"{path}.{name}", problems)


def _check_keys(item, allowed, path, problems):
    if not isinstance(item, dict):
        problems.append(f"{path}: expected a mapping")
        return False
    for key in item:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown key{_hint(key, allowed)}")
    return True


def _check_profiles(spawner, profiles, problems):
    if not isinstance(profiles, list):
        problems.append("singleuser.profileList: expected a list")
        return
    for i, profile in enumerate(profiles):
        path = f"singleuser.profileList[{i}]"
        if not _check_keys(profile, PROFILE_KEYS, path, problems):
            continue
        if "display_name" not in profile:
            problems.append(f"{path}: display_name is required")
        _check_overrides(spawner, profile.get("kubespawner_override"),
                         f"{path}.kubespawner_override", problems)
        options = profile.get("profile_options") or {}
        if not isinstance(options, dict):
            problems.append(f"{path}.profile_options: expected a mapping")
            continue
        for name, option in options.items():
            opath = f"{path}.profile_options.{name}"
            if not _check_keys(option, OPTION_KEYS, opath, problems):
                continue
            for choice_name, choice in (option.get("choices") or {}).items():
                cpath = f"{opath}.choices.{choice_name}"
                if _check_keys(choice, CHOICE_KEYS, cpath, problems):
                    _check_overrides(spawner, choice.get("kubespawner_override"),
                                     f"{cpath}.kubespawner_override", problems)
            unlisted = option.get("unlisted_choice")
            if unlisted is not None and _check_keys(
                    unlisted, UNLISTED_CHOICE_KEYS, f"{opath}.unlisted_choice", problems):
                # values hold "{value}" until the user types one: names only
                _check_overrides(spawner, unlisted.get("kubespawner_override"),
                                 f"{opath}.unlisted_choice.kubespawner_override",
                                 problems, check_types=False)


def _known_classes(app_cls, *in_use):
    """Classes a hub.config section may name, by name.

    JupyterHub.classes (Spawner, Authenticator, CryptKeeper and every installed
    authenticator/spawner/proxy entry point), the app itself and the classes in
    use, plus their JupyterHub-side parents (e.g. OAuthenticator). traitlets'
    own bases (Configurable, Application...) are left out on purpose.
    """
    roots = [app_cls, *_bare(app_cls).classes, *(c for c in in_use if c)]
    return {
        c.__name__: c
        for root in roots
        for c in root.mro()
        if hasattr(c, "class_traits") and not c.__module__.startswith("traitlets")
    }


def _hint(name, candidates):
    candidates = list(candidates)
    name = str(name)
    same = [c for c in candidates if c.lower() == name.lower()]
    matches = same or difflib.get_close_matches(name, candidates, n=3)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


def _class_hint(trait, value):
    """Hint for an authenticator_class/spawner_class that did not resolve."""
    try:  # a module name, e.g. "kubespawner": offer the matching classes in it
        module = importlib.import_module(value)
    except Exception:
        return _hint(value.lower(), trait.load_entry_points())
    names = [f"{value}.{n}" for n, obj in vars(module).items()
             if isinstance(obj, type) and issubclass(obj, trait.klass)
             and obj.__module__.startswith(value)]
    return f"; did you mean {' or '.join(names[:3])}?" if names else ""
