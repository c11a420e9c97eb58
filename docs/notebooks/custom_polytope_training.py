# %% [markdown]
# # custom_polytope_training

# %%
print(1 + 1)
